// Shell command lines → facts (src/policy/shell-facts.ts, shell-lexer.ts,
// shell-programs.ts), the shell rule conditions (shell-match.ts, engine.ts)
// and their config. Table-driven; adversarial spellings throughout.
import t from 'tap';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { ConfigError, configFromObject } from '../src/config/load.js';
import { PolicySet, resolveSshOptions } from '../src/policy/engine.js';
import { analyzeShell, MAX_COMMAND_LINE, type CommandFacts } from '../src/policy/shell/facts.js';
import { decodeAnsiC, parseShell } from '../src/policy/shell/lexer.js';
import { compileArgGlobs, compileCommandGlobs, compileWriteGlobs } from '../src/policy/shell/match.js';

interface Want {
  /** Programs of the statements, in order. */
  programs?: string[];
  /** Some statement is dynamic / pipes to a shell / reads code from the session (true), or none is (false). */
  dynamic?: boolean;
  pipe?: boolean;
  stdin?: boolean;
  /** Some statement changes state (true) / none does (false). */
  changes?: boolean;
  /** Union of paths written (exact set). */
  writes?: string[];
  /** argv of the statement of that program (first one). */
  argv?: Record<string, string[]>;
  parse_error?: RegExp;
}

const C: [string, Want][] = [
  // ---- the basics
  ['ls -la /tmp', { programs: ['ls'], changes: false, dynamic: false, writes: [], argv: { ls: ['ls', '-la', '/tmp'] } }],
  ['', { programs: [] }],
  ['   \n\t  ', { programs: [] }],
  ['# rm -rf /', { programs: [] }],
  ['ls # rm -rf /', { programs: ['ls'], changes: false }],
  ['echo a#b', { programs: ['echo'], argv: { echo: ['echo', 'a#b'] } }],
  ["echo '# x' \"# y\"", { programs: ['echo'], argv: { echo: ['echo', '# x', '# y'] } }],
  // ---- the program name, however it is spelled
  ['rm -rf /', { programs: ['rm'], writes: ['/**'], changes: true, dynamic: false }],
  ['r\\m -rf /', { programs: ['rm'], writes: ['/**'], argv: { rm: ['rm', '-rf', '/'] } }],
  ['"rm" -rf /', { programs: ['rm'], writes: ['/**'] }],
  ["'r'\"m\" -rf /", { programs: ['rm'], writes: ['/**'] }],
  ["$'\\x72\\x6d' -rf /", { programs: ['rm'], writes: ['/**'] }],
  ["$'\\162\\155' -rf /", { programs: ['rm'], writes: ['/**'] }],
  ['$"rm" -rf /', { programs: ['rm'], writes: ['/**'] }],
  ['/bin/rm -rf /', { programs: ['rm'], writes: ['/**'] }],
  ['\\rm -f x', { programs: ['rm'], writes: ['x'] }],
  ['r\\\nm -f x', { programs: ['rm'], writes: ['x'] }], // line continuation inside the word
  ['rm -r -f /', { writes: ['/**'] }],
  ['rm --recursive --force /var/lib/x', { writes: ['/var/lib/x/**'] }],
  ['rm -- -rf', { writes: ['-rf'] }],
  ['rm -rf /*', { writes: ['/*/**'] }],
  // ---- dynamic program words
  ['$(echo rm) -rf /', { programs: ['echo', '$(echo rm)'], dynamic: true, changes: true }],
  ['`echo rm` -rf /', { programs: ['echo', '`echo rm`'], dynamic: true }],
  ['$CMD -rf /', { programs: ['$CMD'], dynamic: true }],
  ['"$CMD" x', { programs: ['$CMD'], dynamic: true }],
  ['${CMD:-rm} x', { programs: ['${CMD:-rm}'], dynamic: true }],
  ['{rm,-rf,/}', { programs: ['{rm,-rf,/}'], dynamic: true }],
  ['/bin/r? -rf /', { programs: ['/bin/r?'], dynamic: true }],
  ['/bin/r[m] -rf /', { programs: ['/bin/r[m]'], dynamic: true }],
  ['!!', { programs: ['!!'], dynamic: true }],
  ['!rm', { programs: ['!rm'], dynamic: true }],
  ['^ls^rm', { programs: ['^ls^rm'], dynamic: true }],
  ['[ -f x ]', { programs: ['['], dynamic: false, changes: false }],
  ['echo {a,b}', { programs: ['echo'], dynamic: false }],
  // ---- lists and pipelines
  ['ls; rm x', { programs: ['ls', 'rm'] }],
  ['ls&&rm x||echo y', { programs: ['ls', 'rm', 'echo'] }],
  ['ls & rm x', { programs: ['ls', 'rm'] }],
  ['ls\nrm x\n', { programs: ['ls', 'rm'] }],
  ['ls | grep x |& tee /tmp/o', { programs: ['ls', 'grep', 'tee'], writes: ['/tmp/o'] }],
  ['! ls', { programs: ['ls'] }],
  ['time -p ls', { programs: ['ls'] }],
  // ---- redirections
  ['echo x > /etc/passwd', { programs: ['echo'], writes: ['/etc/passwd'], changes: true }],
  ['echo x >> /etc/hosts', { writes: ['/etc/hosts'] }],
  ['echo x >| /tmp/a 2> /tmp/err &> /tmp/both &>> /tmp/both2', { writes: ['/tmp/a', '/tmp/err', '/tmp/both', '/tmp/both2'] }],
  ['echo x 2>&1 >&2 >/dev/null 2>/dev/stderr', { writes: [], changes: false }],
  ['echo x >&/tmp/out', { writes: ['/tmp/out'] }],
  ['cat <> /tmp/rw', { writes: ['/tmp/rw'] }],
  ['exec 3>/tmp/fd', { programs: ['exec'], writes: ['/tmp/fd'] }],
  ['> /etc/motd', { programs: [''], writes: ['/etc/motd'], changes: true }],
  ['echo x>/tmp/a', { writes: ['/tmp/a'], argv: { echo: ['echo', 'x'] } }],
  ['echo x 2>/tmp/e', { writes: ['/tmp/e'], argv: { echo: ['echo', 'x'] } }],
  ['echo a2>/tmp/e', { writes: ['/tmp/e'], argv: { echo: ['echo', 'a2'] } }],
  ['cat < /etc/shadow', { writes: [], changes: false }],
  ['echo x > /tmp/../etc/passwd', { writes: ['/etc/passwd'] }],
  ['echo x > //etc///passwd', { writes: ['/etc/passwd'] }],
  ['echo x > "$HOME/.bashrc"', { writes: ['$HOME/.bashrc'] }],
  ['{ echo a; echo b; } > /tmp/g', { programs: ['echo', 'echo'], writes: ['/tmp/g'] }],
  ['while read l; do echo $l; done < in > /etc/out', { programs: ['read', 'echo'], writes: ['/etc/out'] }],
  // ---- substitutions (the commands inside are statements)
  ['echo $(reboot)', { programs: ['reboot', 'echo'] }],
  ['echo `reboot`', { programs: ['reboot', 'echo'] }],
  ['echo "$(echo "$(reboot)")"', { programs: ['reboot', 'echo', 'echo'] }],
  ['echo `echo \\`reboot\\``', { programs: ['reboot', 'echo', 'echo'] }],
  ['x=$(reboot) ls', { programs: ['reboot', 'ls'] }],
  ['x=$(reboot)', { programs: ['reboot'] }],
  ['echo ${x:-$(reboot)}', { programs: ['reboot', 'echo'] }],
  ['echo $((1 + $(reboot)))', { programs: ['reboot', 'echo'] }],
  ['echo $((1+2)) $[3]', { programs: ['echo'] }],
  ['echo $( (reboot) )', { programs: ['reboot', 'echo'] }],
  ['cat <(reboot)', { programs: ['reboot', 'cat'] }],
  ['diff <(ls a) <(ls b)', { programs: ['ls', 'ls', 'diff'], changes: false }],
  ['tee >(reboot) < f', { programs: ['reboot', 'tee'], writes: [] }],
  ['echo $(case x in x) reboot;; esac)', { programs: ['reboot', 'echo'] }],
  // ---- compound commands
  ['(cd /etc && rm -f shadow)', { programs: ['cd', 'rm'], writes: ['/etc/shadow'] }],
  ['if true; then reboot; elif false; then ls; else halt; fi', { programs: ['true', 'reboot', 'false', 'ls', 'halt'] }],
  ['while true; do reboot; done', { programs: ['true', 'reboot'] }],
  ['until false; do sleep 1; done', { programs: ['false', 'sleep'], changes: false }],
  ['for f in *.log; do gzip "$f"; done', { programs: ['gzip'], writes: ['$f'] }],
  ['for ((i=0; i<3; i++)); do echo $i; done', { programs: ['echo'] }],
  ['for x in $(reboot); do :; done', { programs: ['reboot', ':'] }],
  ['select x in a b; do echo $x; done', { programs: ['echo'] }],
  ['case "$1" in start|go) reboot;; (stop) halt ;& *) ls;;& esac', { programs: ['reboot', 'halt', 'ls'] }],
  ['f() { reboot; }; f', { programs: ['reboot', 'f'] }],
  ['function g { reboot; }', { programs: ['reboot'] }],
  ['function h() ( reboot )', { programs: ['reboot'] }],
  ['[[ -f /x && $(reboot) == y ]] && ls', { programs: ['reboot', 'ls'] }],
  ['(( x = $(reboot) + 1 ))', { programs: ['reboot'] }],
  ['((a); (reboot))', { programs: ['a', 'reboot'] }],
  ['coproc reboot', { programs: ['reboot'] }],
  ['a=(1 2 $(reboot)); echo ${a[@]}', { programs: ['reboot', 'echo'] }],
  ['declare -a a=(x y); echo ok', { programs: ['declare', 'echo'] }],
  // ---- here-documents and here-strings
  ["cat <<'EOF'\n$(reboot)\nEOF", { programs: ['cat'] }],
  ['cat <<EOF\n$(reboot)\nEOF', { programs: ['cat', 'reboot'] }], // the body is read after the line
  ['cat <<-EOF > /etc/x\n\tline\n\tEOF\nls', { programs: ['cat', 'ls'], writes: ['/etc/x'] }],
  ["bash <<'EOF'\nrm -rf /\nEOF", { programs: ['bash', 'rm'], dynamic: false, writes: ['/**'] }],
  ['bash <<EOF\nls $X\nEOF', { programs: ['bash', 'ls'], dynamic: true }],
  ["sh <<< 'reboot'", { programs: ['sh', 'reboot'], dynamic: false }],
  ['sh <<< "$(curl x)"', { programs: ['curl', 'sh', 'curl', '$(curl x)'], pipe: true, dynamic: true }],
  ["python3 <<'EOF'\nprint(1)\nEOF", { programs: ['python3'], dynamic: true }],
  // ---- environment prefixes and assignments
  ['FOO=1 rm x', { programs: ['rm'], dynamic: false, writes: ['x'] }],
  ['FOO="a b" BAR=$(id) rm x', { programs: ['id', 'rm'], dynamic: false }],
  ['PATH=/tmp:$PATH ls', { programs: ['ls'], dynamic: true, changes: true }],
  ['LD_PRELOAD=/x.so ls', { dynamic: true }],
  ['BASH_ENV=/tmp/x bash -c true', { dynamic: true }],
  ['PATH=/tmp', { programs: [''], dynamic: true }],
  ['x=1', { programs: [] }],
  ['export PATH=/tmp:$PATH', { programs: ['export'], dynamic: true }],
  ['export FOO=1', { programs: ['export'], dynamic: false, changes: false }],
  ['env -i PATH=/x ls', { programs: ['env', 'ls'], dynamic: true }],
  // ---- wrappers expose the real program
  ['sudo rm -rf /var', { programs: ['sudo', 'rm'], writes: ['/var/**'] }],
  ['sudo -u root -E rm x', { programs: ['sudo', 'rm'], argv: { rm: ['rm', 'x'] } }],
  ['sudo -Eu root rm x', { programs: ['sudo', 'rm'] }],
  ['sudo -- rm x', { programs: ['sudo', 'rm'] }],
  ['sudo tee /etc/hosts', { programs: ['sudo', 'tee'], writes: ['/etc/hosts'] }],
  ['sudo -l', { programs: ['sudo'], changes: false }],
  ['sudo -s', { programs: ['sudo'], dynamic: true, stdin: true }],
  ['sudo -e /etc/hosts', { programs: ['sudo'], writes: ['/etc/hosts'] }],
  ['sudo sh -c "reboot"', { programs: ['sudo', 'sh', 'reboot'] }],
  ['doas rm x', { programs: ['doas', 'rm'] }],
  ['env rm x', { programs: ['env', 'rm'] }],
  ['env FOO=1 -u BAR rm x', { programs: ['env', 'rm'] }],
  ["env -S 'rm -rf /'", { programs: ['env', 'rm'], writes: ['/**'] }],
  ['nice -n 10 rm x', { programs: ['nice', 'rm'] }],
  ['nice -10 rm x', { programs: ['nice', 'rm'] }],
  ['nohup rm x &', { programs: ['nohup', 'rm'] }],
  ['timeout 5 rm x', { programs: ['timeout', 'rm'] }],
  ['timeout -s KILL -k 10 5m rm x', { programs: ['timeout', 'rm'] }],
  ['exec rm x', { programs: ['exec', 'rm'] }],
  ['command rm x', { programs: ['command', 'rm'] }],
  ['command -v rm', { programs: ['command'], changes: false }],
  ['builtin echo x', { programs: ['builtin', 'echo'] }],
  ['busybox rm -rf /', { programs: ['busybox', 'rm'], writes: ['/**'] }],
  ['busybox sh -c reboot', { programs: ['busybox', 'sh', 'reboot'] }],
  ['stdbuf -oL rm x', { programs: ['stdbuf', 'rm'] }],
  ['ionice -c3 rm x', { programs: ['ionice', 'rm'] }],
  ['setsid rm x', { programs: ['setsid', 'rm'] }],
  ['chroot /mnt rm x', { programs: ['chroot', 'rm'] }],
  ['chroot /mnt', { programs: ['chroot'], dynamic: true }],
  ['/usr/bin/time -o /tmp/t rm x', { programs: ['time', 'rm'], writes: ['/tmp/t', 'x'] }],
  ['taskset -c 1 rm x', { programs: ['taskset', 'rm'] }],
  ['strace -o /tmp/s rm x', { programs: ['strace', 'rm'] }],
  ['watch -n1 "ls; reboot"', { programs: ['watch', 'ls', 'reboot'] }],
  ['watch -x rm x', { programs: ['watch', 'rm'] }],
  ['flock /tmp/lock rm x', { programs: ['flock', 'rm'] }],
  ['flock /tmp/lock -c "reboot"', { programs: ['flock', 'reboot'] }],
  ['su -c reboot', { programs: ['su', 'reboot'] }],
  ['su - root -c "reboot"', { programs: ['su', 'reboot'] }],
  ['su postgres', { programs: ['su'], dynamic: true, stdin: true }],
  ['runuser -u app -- rm x', { programs: ['runuser', 'rm'] }],
  ['runuser -l app -c reboot', { programs: ['runuser', 'reboot'] }],
  ['sg adm -c reboot', { programs: ['sg', 'reboot'] }],
  ['script -qc reboot /dev/null', { programs: ['script', 'reboot'] }],
  ['nice nohup sudo -u x timeout 9 env A=1 rm y', { programs: ['nice', 'nohup', 'sudo', 'timeout', 'env', 'rm'], writes: ['y'] }],
  // ---- shells and interpreters
  ["bash -c 'shutdown -h now'", { programs: ['bash', 'shutdown'], dynamic: false }],
  ["bash -lc 'reboot'", { programs: ['bash', 'reboot'] }],
  ["bash -euo pipefail -c 'reboot'", { programs: ['bash', 'reboot'] }],
  ["sh -c -- 'reboot'", { programs: ['sh', 'reboot'] }],
  ['sh -c "$X"', { programs: ['sh', '$X'], dynamic: true, pipe: false }],
  ['sh -c "rm -rf $DIR"', { programs: ['sh', 'rm'], dynamic: true, writes: ['$DIR/**'] }],
  ["bash -c 'sh -c \"bash -c reboot\"'", { programs: ['bash', 'sh', 'bash', 'reboot'] }],
  ['zsh -c reboot', { programs: ['zsh', 'reboot'] }],
  ['bash deploy.sh', { programs: ['bash'], dynamic: true, stdin: false }],
  ['bash', { programs: ['bash'], dynamic: true, stdin: true }],
  ['bash -s -- arg', { programs: ['bash'], dynamic: true, stdin: true }],
  ['bash < script.sh', { programs: ['bash'], dynamic: true, pipe: false, stdin: false }],
  ['bash < <(curl x)', { programs: ['curl', 'bash'], dynamic: true, pipe: true }],
  ['bash <(curl -s x)', { programs: ['curl', 'bash'], pipe: true }],
  ['curl x | sh', { programs: ['curl', 'sh'], pipe: true, dynamic: true }],
  ['curl x|bash -s', { programs: ['curl', 'bash'], pipe: true }],
  ['curl -fsSL x | sudo -E bash -', { programs: ['curl', 'sudo', 'bash'], pipe: true }],
  ['wget -qO- x | python3', { programs: ['wget', 'python3'], pipe: true }],
  ['wget -qO- x | python3 -', { pipe: true }],
  ['curl x | perl', { pipe: true }],
  ['curl x | node', { pipe: true }],
  ['echo cm0gLXJmIC8= | base64 -d | sh', { programs: ['echo', 'base64', 'sh'], pipe: true }],
  ['curl x | tee /tmp/x.sh | sh', { pipe: true, writes: ['/tmp/x.sh'] }],
  ['curl x | (sh)', { pipe: true }],
  ['curl x | { sh; }', { pipe: true }],
  ['bash -c "$(curl -fsSL x)"', { pipe: true, dynamic: true }],
  ['eval "$(curl x)"', { pipe: true }],
  ['source <(curl x)', { pipe: true }],
  ['. /dev/stdin', { dynamic: true, pipe: false }],
  ['curl x | . /dev/stdin', { pipe: true }],
  ['curl x | xargs sh -c', { pipe: true }],
  ["find . | xargs sh -c 'echo \"$@\"' _", { programs: ['find', 'xargs', 'sh', 'echo'], dynamic: false, pipe: false }],
  ['find . | xargs sh', { dynamic: true }],
  ["python3 -c 'import os'", { programs: ['python3'], dynamic: true }],
  ['python3 -Bc "import os"', { dynamic: true }],
  ['python3 -m http.server', { dynamic: false, changes: true }],
  ['python3 manage.py migrate', { dynamic: false, changes: true }],
  ["perl -e 'print 1'", { dynamic: true }],
  ["perl -pi -e 's/a/b/' /etc/hosts", { dynamic: true, writes: ['/etc/hosts'] }],
  ['perl -pi.bak -e s/a/b/ f', { dynamic: true, writes: ['f'] }],
  ["node -e 'x'", { dynamic: true }],
  ["ruby -e 'x'", { dynamic: true }],
  ["php -r 'x'", { dynamic: true }],
  ["awk '{print $1}' f", { programs: ['awk'], dynamic: false, changes: false }],
  ['awk \'BEGIN{system("reboot")}\'', { dynamic: true }],
  ['awk \'{print | "sh"}\'', { dynamic: true }],
  ['awk \'{print > "/tmp/x"}\' f', { changes: true }],
  ['gawk -i inplace \'{print}\' f', { changes: true }],
  // ---- eval, source, aliases
  ['eval rm -rf /', { programs: ['eval', 'rm'], dynamic: true, writes: ['/**'] }],
  ['eval "$X"', { dynamic: true }],
  ["eval 'echo \"'", { programs: ['eval'], dynamic: true }], // a broken eval body: dynamic, not a parse error
  ['source ./env.sh', { programs: ['source'], dynamic: true, changes: true }],
  ['. ./env.sh', { programs: ['.'], dynamic: true }],
  ["alias ls='rm -rf /'", { programs: ['alias', 'rm'], dynamic: true }],
  ["trap 'reboot' EXIT", { programs: ['trap', 'reboot'] }],
  ['trap - EXIT', { programs: ['trap'] }],
  ['hash -p /tmp/evil ls', { dynamic: true }],
  ['fc -s', { dynamic: true }],
  ['fc -l', { dynamic: false }],
  // ---- find and xargs
  ['find / -delete', { programs: ['find'], writes: ['/**'] }],
  ['find /tmp -name x -exec rm -rf {} \\;', { programs: ['find', 'rm'], writes: ['/tmp/**'], argv: { rm: ['rm', '-rf', '/tmp'] } }],
  ["find / -name core -exec rm {} ';'", { programs: ['find', 'rm'], writes: ['/'] }],
  ['find . -execdir sh -c "reboot" \\;', { programs: ['find', 'sh', 'reboot'] }],
  ['find -name x -ok rm {} +', { programs: ['find', 'rm'], writes: ['.'] }],
  ['find / -name x -fprint /etc/list', { programs: ['find'], writes: ['/etc/list'] }],
  ['find / -name "*.conf"', { programs: ['find'], changes: false, writes: [] }],
  ['find . | xargs rm', { programs: ['find', 'xargs', 'rm'], changes: true }],
  ['xargs -0 -n 1 -I{} rm {}', { programs: ['xargs', 'rm'] }],
  ['xargs', { programs: ['xargs'], changes: false }],
  // ---- cd resolves relative writes (best effort)
  ['cd /etc && rm passwd', { writes: ['/etc/passwd'] }],
  ['cd /etc; cd ssh; > sshd_config', { writes: ['/etc/ssh/sshd_config'] }],
  ['cd; rm x', { writes: ['~/x'] }],
  ['cd "$D"; rm x', { writes: ['x'] }],
  ['rm x', { writes: ['x'] }],
  // ---- writers
  ['cp a /etc/', { writes: ['/etc/**'] }],
  ['cp -r src /opt/app', { writes: ['/opt/app/**'] }],
  ['cp -t /etc a b', { writes: ['/etc/**'] }],
  ['mv /etc/passwd /tmp/x', { writes: ['/tmp/x/**', '/etc/passwd'] }],
  ['install -m 755 tool /usr/local/bin/tool', { writes: ['/usr/local/bin/tool/**'] }],
  ['install -d /opt/a /opt/b', { writes: ['/opt/a', '/opt/b'] }],
  ['ln -sf /bin/sh /usr/bin/x', { writes: ['/usr/bin/x'] }],
  ['touch /etc/nologin', { writes: ['/etc/nologin'] }],
  ['mkdir -p /srv/a/b', { writes: ['/srv/a/b'] }],
  ['chmod 600 /etc/shadow', { writes: ['/etc/shadow'] }],
  ['chmod -x /bin/ls', { writes: ['/bin/ls'] }],
  ['chmod -R 777 /', { writes: ['/**'] }],
  ['chown -R app:app /srv', { writes: ['/srv/**'] }],
  ['chgrp adm /var/log/x', { writes: ['/var/log/x'] }],
  ['dd if=/dev/zero of=/dev/sda bs=1M', { writes: ['/dev/sda'] }],
  ['dd if=/dev/sda of=/dev/null', { writes: [], changes: false }],
  ['sed -i s/a/b/ /etc/hosts', { writes: ['/etc/hosts'] }],
  ['sed -i.bak -e s/a/b/ /etc/hosts /etc/x', { writes: ['/etc/hosts', '/etc/x'] }],
  ['sed -Ei s/a/b/ f', { writes: ['f'] }],
  ['sed s/a/b/ /etc/hosts', { writes: [], changes: false }],
  ['tee -a /etc/hosts', { writes: ['/etc/hosts'] }],
  ['truncate -s 0 /var/log/syslog', { writes: ['/var/log/syslog'] }],
  ['shred -u /root/.ssh/id_rsa', { writes: ['/root/.ssh/id_rsa'] }],
  ['sort -o /etc/x f', { writes: ['/etc/x'] }],
  ['curl -o /usr/local/bin/t https://x/t', { writes: ['/usr/local/bin/t'] }],
  ['curl -O https://x/dir/tool.sh', { writes: ['tool.sh'] }],
  ['curl -s https://x', { writes: [], changes: false }],
  ['curl -X DELETE https://x/y', { writes: [], changes: true }],
  ['wget https://x/a.sh', { writes: ['a.sh'], changes: true }],
  ['wget -qO- https://x/a.sh', { writes: [], changes: false }],
  ['tar xzf a.tgz -C /opt', { writes: ['/opt/**'] }],
  ['tar -czf /tmp/b.tgz /srv', { writes: ['/tmp/b.tgz'] }],
  ['tar tzf a.tgz', { writes: [], changes: false }],
  ['unzip a.zip -d /srv', { writes: ['/srv/**'] }],
  ['unzip -l a.zip', { writes: [], changes: false }],
  ['gzip /var/log/x', { writes: ['/var/log/x'] }],
  ['gzip -c /var/log/x', { writes: [], changes: false }],
  ['rsync -a src/ /backup/', { writes: ['/backup/**'] }],
  ['rsync -a src/ host:/backup/', { writes: [] }],
  ['scp host:/etc/passwd /tmp/p', { writes: ['/tmp/p/**'] }],
  ['vim /etc/hosts', { writes: ['/etc/hosts'], changes: true }],
  ['vim -R /etc/hosts', { writes: [] }],
  ['mkfs.ext4 /dev/sdb1', { writes: ['/dev/sdb1'] }],
  ['mount /dev/sdb1 /mnt', { writes: ['/mnt/**'] }],
  ['openssl req -new -keyout /etc/ssl/k.pem -out /etc/ssl/c.pem', { writes: ['/etc/ssl/k.pem', '/etc/ssl/c.pem'] }],
  // ---- changes_state of read-only programs with their arguments
  ['cat /etc/passwd | grep root | wc -l', { changes: false }],
  ['git status; git log --oneline; git diff HEAD~1', { changes: false }],
  ['git commit -am x', { changes: true }],
  ['git branch', { changes: false }],
  ['git branch -D x', { changes: true }],
  ['git -C /srv/app log', { changes: false }],
  ['git push', { changes: true }],
  ['systemctl status nginx', { changes: false }],
  ['systemctl is-active nginx', { changes: false }],
  ['systemctl restart nginx', { changes: true }],
  ['systemctl', { changes: false }],
  ['service nginx status', { changes: false }],
  ['service nginx restart', { changes: true }],
  ['journalctl -u x -n 50', { changes: false }],
  ['journalctl --vacuum-size=1G', { changes: true }],
  ['kubectl get pods -n prod', { changes: false }],
  ['kubectl -n prod delete pod x', { changes: true }],
  ['kubectl config view', { changes: false }],
  ['kubectl config use-context x', { changes: true }],
  ['docker ps', { changes: false }],
  ['docker container ls', { changes: false }],
  ['docker run -it ubuntu', { changes: true }],
  ['docker compose logs web', { changes: false }],
  ['apt list --installed', { changes: false }],
  ['apt install x', { changes: true }],
  ['apt-get update', { changes: true }],
  ['apt-cache policy x', { changes: false }],
  ['dpkg -l', { changes: false }],
  ['dpkg -i x.deb', { changes: true }],
  ['rpm -qa', { changes: false }],
  ['rpm -e x', { changes: true }],
  ['yum list installed', { changes: false }],
  ['dnf install x', { changes: true }],
  ['pip list', { changes: false }],
  ['pip install x', { changes: true }],
  ['npm ls', { changes: false }],
  ['npm version patch', { changes: true }],
  ['pacman -Qi x', { changes: false }],
  ['pacman -Syu', { changes: true }],
  ['ip addr show', { changes: false }],
  ['ip -4 route get 1.1.1.1', { changes: false }],
  ['ip link set eth0 down', { changes: true }],
  ['ip netns exec x reboot', { changes: true }],
  ['iptables -L -n -v', { changes: false }],
  ['iptables -nvL', { changes: false }],
  ['iptables -F', { changes: true }],
  ['iptables -A INPUT -j DROP', { changes: true }],
  ['nft list ruleset', { changes: false }],
  ['nft flush ruleset', { changes: true }],
  ['sysctl -a', { changes: false }],
  ['sysctl -w net.ipv4.ip_forward=1', { changes: true }],
  ['sysctl net.ipv4.ip_forward=1', { changes: true }],
  ['mount', { changes: false }],
  ['hostname', { changes: false }],
  ['hostname evil', { changes: true }],
  ['date +%s', { changes: false }],
  ['date -d yesterday', { changes: false }],
  ['date -s 2020-01-01', { changes: true }],
  ['date 010100002020', { changes: true }],
  ['dmesg -T', { changes: false }],
  ['dmesg -c', { changes: true }],
  ['crontab -l', { changes: false }],
  ['crontab -r', { changes: true }],
  ['kill -l', { changes: false }],
  ['kill -9 1', { changes: true }],
  ['pkill nginx', { changes: true }],
  ['shutdown -h now', { changes: true }],
  ['useradd evil', { changes: true }],
  ['passwd root', { changes: true }],
  ['unknown-program --flag', { changes: true }],
  ['./deploy.sh', { programs: ['deploy.sh'], changes: true }],
  ['ssh host uptime', { programs: ['ssh', 'uptime'], changes: false }],
  ['ssh -p 22 -i k host "rm -rf /"', { programs: ['ssh', 'rm'], writes: ['/**'] }],
  ['ssh host', { programs: ['ssh'], changes: true }],
  ['/usr/lib/openssh/sftp-server', { programs: ['sftp-server'], dynamic: true, stdin: true }],
  ['scp -t /srv/upload', { changes: true, writes: ['/srv/upload/**'] }],
  ['scp -f /etc/shadow', { writes: [] }],
  // ---- parse errors
  ["echo 'unterminated", { parse_error: /unterminated single quote/ }],
  ['echo "unterminated', { parse_error: /unterminated double quote/ }],
  ['echo `unterminated', { parse_error: /unterminated backquote/ }],
  ['echo $(unterminated', { parse_error: /missing "\)"/ }],
  ['echo ${unterminated', { parse_error: /unterminated \$\{/ }],
  ["echo $'unterminated", { parse_error: /unterminated \$' quote/ }],
  ['ls |', { parse_error: /expected a command/ }],
  ['ls &&', { parse_error: /expected a command/ }],
  ['| ls', { parse_error: /unexpected "\|"/ }],
  ['ls )', { parse_error: /unexpected "\)"/ }],
  ['(ls', { parse_error: /missing "\)"/ }],
  ['ls ;;', { parse_error: /unexpected ";;"/ }],
  ['if true; then ls', { parse_error: /missing "elif" or "else" or "fi"/ }],
  ['{ ls }', { parse_error: /missing "\}"/ }],
  ['fi', { parse_error: /unexpected "fi"/ }],
  ['echo >', { parse_error: /expected a word after >/ }],
  ['case x in a) ls', { parse_error: /missing "esac"/ }],
  ['echo a (b)', { parse_error: /unexpected "\("/ }],
  ["bash -c 'echo \"'", { parse_error: /in bash -c: unterminated double quote/ }],
  ["sudo sh -c 'ls |'", { parse_error: /in sh -c: expected a command/ }],
  ['select * from customers', { parse_error: /bad for-loop variable/ }],
];

function any(f: CommandFacts[], k: 'dynamic' | 'pipes_to_shell' | 'stdin_code' | 'changes_state'): boolean {
  return f.some((s) => s[k] === true);
}

t.test('command lines', async (t) => {
  for (const [line, want] of C) {
    const facts = analyzeShell(line);
    const label = JSON.stringify(line);
    const st = facts.statements as CommandFacts[];
    if (want.parse_error) {
      t.match(facts.parse_error, want.parse_error, `${label}: parse error`);
      t.same(st, [], `${label}: no statements`);
      continue;
    }
    t.equal(facts.parse_error, undefined, `${label}: parses`, { statements: st });
    const diag = { statements: st.map((s) => ({ program: s.program, argv: s.argv, paths_written: s.paths_written, dynamic: s.dynamic, pipes_to_shell: s.pipes_to_shell, changes_state: s.changes_state, nested_in: s.nested_in })) };
    for (const s of st) t.equal(s.kind, 'command', `${label}: kind command`);
    if (want.programs) t.same(st.map((s) => s.program), want.programs, `${label}: programs`, diag);
    if (want.dynamic !== undefined) t.equal(any(st, 'dynamic'), want.dynamic, `${label}: dynamic ${want.dynamic}`, diag);
    if (want.pipe !== undefined) t.equal(any(st, 'pipes_to_shell'), want.pipe, `${label}: pipes_to_shell ${want.pipe}`, diag);
    if (want.stdin !== undefined) t.equal(any(st, 'stdin_code'), want.stdin, `${label}: stdin_code ${want.stdin}`, diag);
    if (want.changes !== undefined) t.equal(any(st, 'changes_state'), want.changes, `${label}: changes_state ${want.changes}`, diag);
    if (want.writes) t.same([...new Set(st.flatMap((s) => s.paths_written))].sort(), [...want.writes].sort(), `${label}: paths written`, diag);
    for (const [p, argv] of Object.entries(want.argv ?? {})) t.same(st.find((s) => s.program === p)?.argv, argv, `${label}: argv of ${p}`, diag);
  }
});

t.test('statement details', async (t) => {
  const f = analyzeShell('sudo -u root nice rm -rf /var/lib/x').statements as CommandFacts[];
  t.match(f[0], { program: 'sudo', argv: ['sudo', '-u', 'root', 'nice', 'rm', '-rf', '/var/lib/x'], paths_written: ['/var/lib/x/**'], changes_state: true, text: 'sudo -u root nice rm -rf /var/lib/x' });
  t.notOk(f[0]!.wrappers, 'the outermost wrapper runs under nothing');
  t.match(f[1], { program: 'nice', wrappers: ['sudo'] });
  t.match(f[2], { program: 'rm', wrappers: ['sudo', 'nice'], argv: ['rm', '-rf', '/var/lib/x'] });
  const p = analyzeShell('/usr/local/bin/tool --x').statements[0] as CommandFacts;
  t.match(p, { program: 'tool', path: '/usr/local/bin/tool' });
  const n = analyzeShell("bash -c 'echo $(id)'").statements as CommandFacts[];
  t.same(n.map((s) => [s.program, s.nested_in]), [['bash', undefined], ['id', 'bash -c $( )'], ['echo', 'bash -c']]);
  const q = analyzeShell('ls; echo hi | cat');
  t.same(q.statements.map((s) => s.text), ['ls', 'echo hi', 'cat'], 'each statement keeps its own text');
  t.equal(q.normalized, 'ls; echo hi | cat');
  t.match(q.fingerprint, /^[0-9a-f]{16}$/);
  t.equal(analyzeShell('ls -la; echo a | cat').fingerprint, analyzeShell('ls; echo b | cat').fingerprint, 'the fingerprint is the programs');
  t.same(q.statements[0]!.tables_read, [], 'the SQL fields are empty');
  t.equal(decodeAnsiC('\\x41\\102\\u00e9\\n\\t\\\\\\cA'), 'ABé\n\t\\\x01');
  const long = analyzeShell('x'.repeat(MAX_COMMAND_LINE + 1));
  t.match(long.parse_error, /longer than/);
  const deep = analyzeShell('echo ' + '$('.repeat(200) + 'x' + ')'.repeat(200));
  t.match(deep.parse_error, /too deep/, 'deep nesting is refused, not a stack overflow');
  let text = 'reboot';
  for (let i = 0; i < 12; i++) text = `sh -c ${JSON.stringify(text)}`;
  const nested = analyzeShell(text).statements as CommandFacts[];
  t.ok(nested.some((s) => s.dynamic && s.program === ''), 'sh -c nested past the limit becomes dynamic');
  t.ok(nested.every((s) => s.program !== 'reboot'), 'and is not followed further');
  t.same(parseShell("a 'b c' \"d $e\"")[0]!.words.map((w) => [w.value, w.static, w.quoted]), [['a', true, false], ['b c', true, true], ['d $e', false, true]]);
});

t.test('glob matching for commands, args and writes', async (t) => {
  const cmd = compileCommandGlobs(['rm', 'mkfs*', '/usr/local/bin/*']);
  t.ok(cmd('rm', undefined));
  t.ok(cmd('rm', '/bin/rm'), 'a basename glob matches a program given by path');
  t.ok(cmd('mkfs.ext4', undefined));
  t.notOk(cmd('rmdir', undefined));
  t.ok(cmd('tool', '/usr/local/bin/tool'));
  t.ok(cmd('tool', '/usr/local/bin/../bin/tool'), 'paths are normalised');
  t.notOk(cmd('tool', undefined), 'a path glob needs a path');
  t.notOk(cmd('tool', '/usr/local/bin/sub/tool'), '* stays within a segment');
  const args = compileArgGlobs(['-rf', '/', '--force*', '*passwd*']);
  t.ok(args('-rf'));
  t.ok(args('/'));
  t.ok(args('--force=yes'));
  t.ok(args('/etc/passwd'), '* crosses / in args');
  t.notOk(args('-r'));
  const w = compileWriteGlobs(['/etc/**', '/boot/*', '*.conf', '/']);
  t.ok(w('/etc'), '/etc/** matches /etc itself');
  t.ok(w('/etc/ssh/sshd_config'));
  t.notOk(w('/etcetera'));
  t.ok(w('/boot/vmlinuz'));
  t.notOk(w('/boot/grub/grub.cfg'), '* stays within a segment');
  t.ok(w('/srv/app/nginx.conf'), 'a glob without / matches the basename');
  t.ok(w('/'), 'the root itself');
  t.notOk(w('/tmp/x'));
  t.notOk(w('relative/x'));
  const trees = compileWriteGlobs(['/etc/passwd']);
  t.ok(trees('/**'), 'rm -rf / writes /etc/passwd');
  t.ok(trees('/etc/**'), 'rm -rf /etc writes /etc/passwd');
  t.notOk(trees('/var/**'));
  t.notOk(trees('/etc/ssh/**'));
  t.ok(trees('/*'), 'a wildcard under / counts as /');
  t.ok(trees('/e*/x'), 'a wildcard path counts as the directory it lists');
  t.ok(compileWriteGlobs(['*.conf'])('/etc/**'), 'a basename glob may match inside any tree');
  t.ok(compileWriteGlobs(['/e*/passwd'])('/etc/**'), 'a glob that may name something inside the tree');
  t.notOk(compileWriteGlobs(['/var/*.log'])('/etc/**'));
  t.ok(compileWriteGlobs(['/etc/'])('/etc/hosts'), 'a trailing slash means the directory and below');
  t.notOk(compileWriteGlobs(['/etc/**'])('$DIR/x'), 'a path built at run time is matched as written');
});

const S = (on_parse_error: 'allow' | 'deny' = 'deny') => ({ default: 'deny' as const, on_parse_error });

t.test('SQL and shell rules coexist', async (t) => {
  const cfg = configFromObject(
    {
      targets: {},
      policies: [
        {
          name: 'p',
          rules: [
            { deny: { tables: ['customers'], name: 'sql-tables' } },
            { deny: { functions: ['pg_read_file'], name: 'sql-functions' } },
            { deny: { commands: ['select', 'drop'], name: 'shell-commands' } },
            { review: { args: ['customers'], name: 'shell-args' } },
            { deny: { writes: ['/etc/**'], name: 'shell-writes' } },
            { deny: { pipe_to_shell: true, name: 'shell-pipe' } },
            { allow: { set_role: false, name: 'sql-not-set-role' } },
            { allow: { pipe_to_shell: false, name: 'shell-not-piped' } },
            { allow: { kind: ['command'], commands: ['ls', 'cat'], name: 'kind-command' } },
          ],
        },
      ],
    },
    '',
  );
  const set = new PolicySet(cfg.policies, cfg.policy);
  const shell = (s: string) => set.decide(s, analyzeShell).decision;
  const sqlLike = (kind: string, extra: object = {}) =>
    set.decide(`sql:${kind}:${JSON.stringify(extra)}`, () => ({ statements: [{ kind, tables_read: [], tables_written: [], functions: [], changes_state: false, via: 'top', ...extra }] })).decision;
  t.match(shell('cat customers'), { action: 'review', rule: 'shell-args' }, 'a table rule does not match a command whose argument has the name');
  t.match(shell('ls'), { action: 'allow', rule: 'shell-not-piped' }, 'set_role: false (SQL) does not allow commands; pipe_to_shell: false does');
  t.match(shell('drop x'), { action: 'deny', rule: 'shell-commands', program: 'drop' });
  t.match(shell('touch /etc/x'), { action: 'deny', rule: 'shell-writes' });
  t.match(shell('curl x | sh'), { action: 'deny', rule: 'shell-pipe' });
  t.match(sqlLike('select', { tables_read: ['customers'] }), { action: 'deny', rule: 'sql-tables' });
  t.match(sqlLike('select'), { action: 'allow', rule: 'sql-not-set-role' }, 'pipe_to_shell: false (shell) does not allow SQL');
  t.match(sqlLike('drop'), { action: 'allow', rule: 'sql-not-set-role' }, 'commands: [drop] does not match a DROP statement');
  t.match(sqlLike('select', { functions: ['pg_read_file'] }), { action: 'deny', rule: 'sql-functions' });
  const d = new PolicySet(configFromObject({ targets: {}, policies: [{ name: 'q', rules: [{ allow: { commands: ['ls'] } }] }] }, '').policies, S());
  t.match(d.decide('rm x', analyzeShell).decision, { action: 'deny', rule: 'default', program: 'rm', message: 'no policy rule allows the command "rm" (policy.default: deny)' });
  t.match(d.decide('ls "', analyzeShell).decision, { action: 'deny', rule: 'on_parse_error' });
  const lenient = new PolicySet(configFromObject({ targets: {}, policies: [{ name: 'q', rules: [{ allow: { commands: ['ls'] } }] }] }, '').policies, S('allow'));
  t.match(lenient.decide('ls "', analyzeShell).decision, { action: 'allow', rule: 'on_parse_error' });
  t.match(d.decide('', analyzeShell).decision, { action: 'allow', rule: 'empty' });
});

t.test('config: shell conditions and the ssh block', async (t) => {
  const cfg = configFromObject(
    {
      targets: {},
      policies: [
        { name: 'a', rules: [{ deny: { commands: ['rm'], args: ['-rf'], writes: ['/etc/**'], pipe_to_shell: true, kind: ['command'], message: 'no' } }] },
        { name: 'b', match: { protocols: ['ssh'] }, ssh: { shell: 'deny', sftp: 'read_only', forwarding: { local: true, x11: false } } },
      ],
    },
    '',
  );
  t.same(cfg.policies[0]!.rules[0]!.when, { kind: ['command'], commands: ['rm'], args: ['-rf'], writes: ['/etc/**'], pipe_to_shell: true });
  t.same(cfg.policies[1]!.ssh, { shell: 'deny', sftp: 'read_only', forwarding: { local: true, x11: false } });
  t.same(cfg.policies[1]!.rules, [], 'a policy may have only an ssh block');
  const bad = (policies: unknown[]) => {
    try {
      configFromObject({ targets: {}, policies }, '');
      return '';
    } catch (e) {
      return e instanceof ConfigError ? e.message : String(e);
    }
  };
  t.match(bad([{ name: 'x', rules: [{ deny: { tables: ['t'], commands: ['rm'] } }] }]), /tables \(SQL\) and commands \(shell commands\) never hold for the same statement/);
  t.match(bad([{ name: 'x', rules: [{ deny: { where: 'absent', pipe_to_shell: true } }] }]), /where \(SQL\) and pipe_to_shell/);
  t.match(bad([{ name: 'x', ssh: { sftp: 'readonly' } }]), /ssh\.sftp: expected one of read_write, read_only, deny/);
  t.match(bad([{ name: 'x', ssh: { forwarding: { tcp: true } } }]), /unknown key "tcp"/);
  t.match(bad([{ name: 'x', ssh: { shell: 'maybe' } }]), /expected one of allow, deny/);
  t.match(bad([{ name: 'x', rules: [{ deny: { kind: ['comand'] } }] }]), /unknown statement kind "comand".*command/);
  t.match(bad([{ name: 'x' }]), /a policy needs rules, read_only: true or an ssh block/);
  t.match(bad([{ name: 'x', rules: [{ deny: { commands: [] } }] }]), /must not be empty/);
});

t.test('SSH options combine strictest-first', async (t) => {
  const P = (name: string, ssh?: object, read_only = false) => ({ name, match: {}, read_only, rules: [], ...(ssh && { ssh }) });
  const closed = { local: false, remote: false, agent: false, x11: false };
  t.same(resolveSshOptions([P('a')], S()), { shell: 'allow', sftp: 'read_write', forwarding: closed }, 'defaults: shell and sftp open, forwarding closed');
  t.same(resolveSshOptions([P('a', { shell: 'deny' }), P('b', { shell: 'allow' })], S()).shell, 'deny', 'deny beats allow');
  t.same(resolveSshOptions([P('a', { sftp: 'read_only' }), P('b', { sftp: 'read_write' })], S()).sftp, 'read_only');
  t.same(resolveSshOptions([P('a', { sftp: 'read_only' }), P('b', { sftp: 'deny' })], S()).sftp, 'deny');
  t.same(resolveSshOptions([P('a', undefined, true)], S()).sftp, 'read_only', 'read_only: true means sftp read_only');
  t.same(resolveSshOptions([P('a', { sftp: 'read_write' }, true)], S()).sftp, 'read_only', 'even if the same policy says read_write');
  t.same(resolveSshOptions([P('a', { forwarding: { local: true } }), P('b')], S()).forwarding, { ...closed, local: true }, 'a grant, and a policy that says nothing abstains');
  t.same(resolveSshOptions([P('a', { forwarding: { local: true, remote: true } }), P('b', { forwarding: { remote: false } })], S()).forwarding, { ...closed, local: true }, 'any refusal wins');
  t.same(resolveSshOptions([], S()), { shell: 'deny', sftp: 'deny', forwarding: closed }, 'no policy applies, default deny');
  t.same(resolveSshOptions([], { default: 'allow', on_parse_error: 'deny' }), { shell: 'allow', sftp: 'read_write', forwarding: closed }, 'no policy applies, default allow: forwarding still closed');
});

t.test('the decision cache is per analyzer', async (t) => {
  const set = new PolicySet(configFromObject({ targets: {}, policies: [{ name: 'r', read_only: true }] }, '').policies, S());
  let calls = 0;
  const counting = (s: string) => {
    calls++;
    return analyzeShell(s);
  };
  set.decide('rm x', counting);
  set.decide('rm x', counting);
  t.equal(calls, 1, 'cached for the same analyzer');
  t.equal(set.decide('rm x', () => ({ statements: [] })).decision.rule, 'empty', 'another analyzer does not see that entry');
  for (let i = 0; i < 10; i++) set.decide('x', () => ({ statements: [] })); // throwaway closures do not grow the set's caches without bound
  t.ok((set as unknown as { caches: Map<unknown, unknown> }).caches.size <= 4, 'at most 4 caches');
});
