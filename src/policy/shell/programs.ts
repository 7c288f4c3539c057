// What shell-facts knows about programs: wrappers that run another command,
// interpreters, which programs leave the system unchanged, and which files the
// usual writers write. Best effort, by design a closed list: a program that is
// not listed as read-only counts as changing state.

// ---------------------------------------------------------------- option scanning

/** Splits argv (without the program) into options and operands, GNU style. */
export interface OptionScan {
  /** Option name (e.g. '-o', '--output') → its values, in order; flags have ''. */
  opts: Map<string, string[]>;
  operands: string[];
  /** Index in args of each operand. */
  operandIndex: number[];
}

/**
 * Scans GNU-style options. `withValue` lists options taking a value ('-o',
 * '--output'); short clusters (-abc) are split, and a value may be attached
 * (-ofile, --output=file). Options stop at '--' and, with `stopAtOperand`,
 * at the first operand.
 */
export function scanOptions(args: readonly string[], withValue: ReadonlySet<string>, stopAtOperand = false): OptionScan {
  const opts = new Map<string, string[]>();
  const operands: string[] = [];
  const operandIndex: number[] = [];
  const add = (k: string, v: string) => {
    const l = opts.get(k);
    if (l) l.push(v);
    else opts.set(k, [v]);
  };
  let i = 0;
  let done = false;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (done || a === '-' || !a.startsWith('-')) {
      operands.push(a);
      operandIndex.push(i);
      if (stopAtOperand) done = true;
      continue;
    }
    if (a === '--') {
      done = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      if (eq >= 0) add(name, a.slice(eq + 1));
      else if (withValue.has(name)) add(name, args[++i] ?? '');
      else add(name, '');
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const name = '-' + a[j];
      if (withValue.has(name)) {
        add(name, j + 1 < a.length ? a.slice(j + 1) : (args[++i] ?? ''));
        break;
      }
      add(name, '');
    }
  }
  return { opts, operands, operandIndex };
}

const set = (s: string) => new Set(s.split(/\s+/).filter(Boolean));
const has = (o: OptionScan, ...names: string[]) => names.some((n) => o.opts.has(n));

// ---------------------------------------------------------------- wrappers

/** A program that runs another command given as its remaining arguments. */
export interface WrapperSpec {
  /** Options that take a value. */
  withValue: ReadonlySet<string>;
  /** Operands to skip before the command (timeout's duration, chroot's directory). */
  skip?: number;
  /** NAME=value words may precede the command (env). */
  env?: boolean;
  /** With one of these options no command runs (command -v, sudo -l). */
  noRun?: ReadonlySet<string>;
  /** Options that run the user's shell: with a command, the command goes through it; without, it is interactive. */
  shell?: ReadonlySet<string>;
  /** An option whose value is a shell command string (su -c, flock -c). */
  stringOption?: ReadonlySet<string>;
  /** The remaining words are joined and run by `sh -c` (watch without -x). */
  joinsWords?: boolean;
  /** Options whose value is a file the wrapper writes (time -o, strace -o). */
  writes?: ReadonlySet<string>;
  /** Options that edit files instead of running a command (sudo -e): operands are written. */
  edits?: ReadonlySet<string>;
  /** A numeric option such as nice -10 is a flag. */
  numericFlag?: boolean;
}

const W = (withValue: string, more: Partial<WrapperSpec> = {}): WrapperSpec => ({ withValue: set(withValue), ...more });

export const WRAPPERS: Record<string, WrapperSpec> = {
  sudo: W('-u --user -g --group -h --host -p --prompt -C --close-from -D --chdir -r --role -t --type -T --command-timeout -U --other-user -R --chroot', {
    noRun: set('-l --list -v --validate -k --reset-timestamp -K --remove-timestamp -V --version --help'),
    shell: set('-s --shell -i --login'),
    edits: set('-e --edit'),
  }),
  doas: W('-u -C', { shell: set('-s') }),
  env: W('-u --unset -C --chdir -S --split-string', { env: true }),
  nice: W('-n --adjustment', { numericFlag: true }),
  nohup: W(''),
  timeout: W('-k --kill-after -s --signal', { skip: 1 }),
  stdbuf: W('-i --input -o --output -e --error'),
  ionice: W('-c --class -n --classdata', { noRun: set('-p --pid -P --pgid -u --uid') }),
  setsid: W(''),
  chroot: W('--userspec --groups', { skip: 1 }),
  time: W('-f --format -o --output', { writes: set('-o --output') }),
  exec: W('-a'),
  command: W('', { noRun: set('-v -V') }),
  builtin: W(''),
  busybox: W(''),
  toybox: W(''),
  taskset: W('', { skip: 1, noRun: set('-p --pid') }),
  xargs: W('-a --arg-file -d --delimiter -E -I -L -n --max-args -P --max-procs -s --max-chars --process-slot-var', { noRun: set('--show-limits --help --version') }),
  flock: W('-w --timeout -E --conflict-exit-code', { skip: 1, stringOption: set('-c --command') }),
  su: W('-s --shell -g --group -G --supp-group -w --whitelist-environment', { stringOption: set('-c --command'), skip: 1 }),
  runuser: W('-u --user -s --shell -g --group -G --supp-group -w --whitelist-environment', { stringOption: set('-c --command') }),
  sg: W('', { stringOption: set('-c'), skip: 1, joinsWords: true }),
  script: W('-t --timing -T --log-timing -I --log-in -O --log-out -B --log-io -E --echo', { stringOption: set('-c --command') }),
  watch: W('-n --interval -d --differences -q --equexit --shell', { joinsWords: true }),
  strace: W('-o --output -e -p --attach -s --string-limit -u --user -a --columns -E --env -I -O -P --trace-path -S --summary-sort-by -X --const-print-style -b --detach-on', {
    writes: set('-o --output'),
    noRun: set('-p --attach'),
  }),
  ltrace: W('-o --output -e -p -s -u -a -n -A -D -F -l -x -w', { writes: set('-o --output'), noRun: set('-p') }),
  unbuffer: W(''),
  nocache: W(''),
  eatmydata: W(''),
  fakeroot: W('-l --lib -s -i'),
  catchsegv: W(''),
  chronic: W(''),
  torsocks: W('-u -p -a -P'),
  proxychains: W('-f'),
  proxychains4: W('-f'),
  caffeinate: W('-t -w'),
  nsenter: W('-t --target -S --setuid -G --setgid'),
  unshare: W('--propagation --setgroups -S --setuid -G --setgid -R --root -w --wd'),
  chrt: W('', { skip: 1 }),
  'systemd-run': W('-u --unit -p --property -E --setenv -M --machine -H --host --slice --description --on-active --on-calendar --uid --gid --working-directory'),
};

// ---------------------------------------------------------------- interpreters

export const SHELLS = set('sh bash dash zsh ksh ksh93 mksh pdksh oksh ash rbash yash posh fish csh tcsh busybox-sh');

/** Shell options taking a value (the next word is not the script). */
export const SHELL_VALUE_OPTS = set('-o +o -O +O --rcfile --init-file');

export interface InterpreterSpec {
  /** Options whose value is program text (python -c). */
  inline: ReadonlySet<string>;
  /** Options taking a value (so the next word is not the script). */
  withValue: ReadonlySet<string>;
  /** Options naming a module to run instead of a script (python -m). */
  module?: ReadonlySet<string>;
  /** Short options whose value can only be attached (perl -i.bak): the rest of the cluster. */
  attached?: ReadonlySet<string>;
}

const I = (inline: string, withValue: string, module = '', attached = ''): InterpreterSpec => ({ inline: set(inline), withValue: set(withValue), module: set(module), attached: set(attached) });

const INTERPRETERS: [RegExp, InterpreterSpec][] = [
  [/^(python|pypy)[0-9.]*$/, I('-c', '-W -X -Q', '-m')],
  [/^perl[0-9.]*$/, I('-e -E', '-I', '', '-i -l -0 -x -C -d -D -M -m')],
  [/^ruby[0-9.]*$/, I('-e', '-I -r', '', '-i -l -0 -x -C -F -K -W -T -E')],
  [/^(node|nodejs|bun|deno)$/, I('-e --eval -p --print', '-r --require --import --loader --experimental-loader -C --conditions --env-file')],
  [/^php[0-9.]*$/, I('-r -B -R -E -F', '-c -d -z -n')],
  [/^(lua|luajit)[0-9.]*$/, I('-e', '-l')],
  [/^(tclsh|wish|expect)[0-9.]*$/, I('-c', '')],
  [/^Rscript$/, I('-e --expr', '')],
  [/^(pwsh|powershell)$/, I('-c -Command -command -EncodedCommand -e -ec -encodedcommand', '-File -f -ExecutionPolicy')],
  [/^osascript$/, I('-e', '-l')],
  [/^julia$/, I('-e -E --eval --print', '-L -J')],
  [/^(irb|jshell|groovy)$/, I('-e', '')],
];

export function interpreterSpec(name: string): InterpreterSpec | undefined {
  for (const [re, spec] of INTERPRETERS) if (re.test(name)) return spec;
  return undefined;
}

// ---------------------------------------------------------------- sensitive environment

/** Variables that change which program runs or inject code into it: assigning them makes a command dynamic. */
const SENSITIVE_ENV = set(
  'PATH BASH_ENV ENV IFS PROMPT_COMMAND SHELLOPTS BASHOPTS PS4 GCONV_PATH PYTHONPATH PYTHONSTARTUP PYTHONHOME PERL5OPT PERL5LIB PERLLIB RUBYOPT RUBYLIB NODE_OPTIONS NODE_PATH GIT_SSH GIT_SSH_COMMAND GIT_EXEC_PATH GIT_EXTERNAL_DIFF GIT_PAGER GIT_EDITOR PAGER EDITOR VISUAL MANPAGER LESSOPEN LESSCLOSE SUDO_ASKPASS SSH_ASKPASS',
);

export function isSensitiveEnv(name: string): boolean {
  return SENSITIVE_ENV.has(name) || name.startsWith('LD_') || name.startsWith('BASH_FUNC_') || name.startsWith('DYLD_') || name.startsWith('GIT_CONFIG');
}

// ---------------------------------------------------------------- read-only programs

/** First operand after global options (a subcommand), or undefined. */
function subcommand(args: readonly string[], withValue = ''): { verb: string | undefined; rest: string[] } {
  const o = scanOptions(args, set(withValue), true);
  const i = o.operandIndex[0];
  return { verb: o.operands[0], rest: i === undefined ? [] : args.slice(i + 1) };
}

const verbIn = (ro: string, withValue = '', noVerbIsRO = true) => {
  const s = set(ro);
  return (a: readonly string[]) => {
    const { verb } = subcommand(a, withValue);
    return verb === undefined ? noVerbIsRO : s.has(verb);
  };
};

const noneOf = (opts: string, withValue = '') => {
  const s = set(opts);
  return (a: readonly string[]) => {
    const o = scanOptions(a, set(withValue));
    return ![...o.opts.keys()].some((k) => s.has(k) || [...s].some((x) => x.endsWith('*') && k.startsWith(x.slice(0, -1))));
  };
};

const GIT_RO = set(
  'status log diff show blame annotate shortlog describe rev-parse rev-list ls-files ls-tree ls-remote cat-file grep show-ref for-each-ref name-rev merge-base count-objects check-ignore check-attr check-ref-format var help version whatchanged cherry range-diff show-branch verify-commit verify-tag verify-pack fsck diff-tree diff-files diff-index get-tar-commit-id',
);

function gitReadOnly(a: readonly string[]): boolean {
  const { verb, rest } = subcommand(a, '-C -c --git-dir --work-tree --namespace --exec-path --super-prefix --config-env');
  if (verb === undefined) return true;
  if (GIT_RO.has(verb)) return true;
  const o = scanOptions(rest, set('--sort --format --contains --no-contains --merged --no-merged --points-at --color --column'));
  switch (verb) {
    case 'branch':
      return o.operands.length === 0 && !has(o, '-d', '-D', '--delete', '-m', '-M', '--move', '-c', '-C', '--copy', '-u', '--set-upstream-to', '--unset-upstream', '--edit-description', '-f', '--force');
    case 'tag':
      return o.operands.length === 0 || has(o, '-l', '--list', '-v', '--verify');
    case 'remote':
      return o.operands.length === 0 || ['show', 'get-url'].includes(o.operands[0]!);
    case 'config':
      return has(o, '--get', '--get-all', '--get-regexp', '--get-urlmatch', '--list', '-l', '--show-origin', '--show-scope') || o.operands[0] === 'get' || o.operands[0] === 'list';
    case 'stash':
      return o.operands[0] === 'list' || o.operands[0] === 'show';
    case 'reflog':
      return o.operands.length === 0 || o.operands[0] === 'show';
    case 'worktree':
      return o.operands[0] === 'list';
    case 'submodule':
      return o.operands[0] === 'status' || o.operands[0] === 'summary';
    case 'notes':
      return o.operands.length === 0 || o.operands[0] === 'list' || o.operands[0] === 'show';
    default:
      return false;
  }
}

const DOCKER_RO = set('ps images inspect logs version info stats top port history search events diff');
const DOCKER_MGMT_RO: Record<string, Set<string>> = {
  container: set('ls list ps inspect logs top port stats diff'),
  image: set('ls list inspect history'),
  network: set('ls list inspect'),
  volume: set('ls list inspect'),
  system: set('df info events'),
  compose: set('ps logs config images ls top version port events'),
  context: set('ls list show inspect'),
  node: set('ls list inspect ps'),
  service: set('ls list ps logs inspect'),
  secret: set('ls list inspect'),
  config: set('ls list inspect'),
  plugin: set('ls list inspect'),
  buildx: set('ls inspect version du'),
  manifest: set('inspect'),
  trust: set('inspect'),
};
function dockerReadOnly(a: readonly string[]): boolean {
  const { verb, rest } = subcommand(a, '-H --host --context -c --config -l --log-level --tlscacert --tlscert --tlskey');
  if (verb === undefined) return true;
  if (DOCKER_RO.has(verb)) return true;
  const ro = DOCKER_MGMT_RO[verb];
  if (!ro) return false;
  const sub = subcommand(rest, '-f --file -p --project-name --project-directory --profile --env-file').verb;
  return sub !== undefined && ro.has(sub);
}

function kubectlReadOnly(a: readonly string[]): boolean {
  const { verb, rest } = subcommand(a, '-n --namespace --context --cluster --kubeconfig -s --server --user --token --as --as-group --request-timeout -v --v --certificate-authority --client-certificate --client-key --tls-server-name');
  if (verb === undefined) return true;
  if (set('get describe logs top explain version api-resources api-versions cluster-info diff events wait').has(verb)) return true;
  const sub = subcommand(rest, '-n --namespace').verb;
  if (verb === 'config') return sub !== undefined && set('view get-contexts get-clusters get-users current-context').has(sub);
  if (verb === 'auth') return sub === 'can-i' || sub === 'whoami';
  if (verb === 'rollout') return sub === 'status' || sub === 'history';
  return false;
}

const PKG_RO = set(
  'list ls search show showsrc showpkg policy depends rdepends madison changelog help moo version --version -v -V info provides whatprovides repolist repoinfo check-update deplist repoquery updateinfo se if lr packages pa patches patterns pt products pd what-provides wp stats dot outdated desc deps uses leaves config doctor home options commands find known connections interfaces services warnings remotes remote-ls freeze check query view v ll la s fund explain why root prefix bin whoami ping contents dependency environment specification which search-files tree metadata locate-project env doc',
);
const pkgReadOnly = (a: readonly string[]) => {
  const { verb, rest } = subcommand(a, '-c --config -o --option -t --target-release -C --root --installroot --cache-dir --prefix -g');
  if (verb === undefined) return true;
  if (verb === 'config') return rest[0] === undefined || ['get', 'list', 'ls', 'debug'].includes(rest[0]!);
  if (verb === 'version') return rest.length === 0; // npm version patch writes
  if (verb === 'history') return rest[0] === undefined || rest[0] === 'list' || rest[0] === 'info';
  if (verb === 'cache') return ['list', 'info', 'dir', 'ls'].includes(rest[0] ?? '');
  if (verb === 'env') return !rest.some((r) => r === '-w' || r === '-u');
  if (verb === 'audit') return !rest.includes('fix');
  return PKG_RO.has(verb);
};

function dateReadOnly(a: readonly string[]): boolean {
  const o = scanOptions(a, set('-d --date -f --file -r --reference -I --iso-8601 --rfc-3339 -R'));
  if (has(o, '-s', '--set')) return false;
  return o.operands.every((x) => x.startsWith('+'));
}

function curlReadOnly(a: readonly string[]): boolean {
  const o = scanOptions(a, CURL_VALUE);
  if (has(o, '-d', '--data', '--data-ascii', '--data-binary', '--data-raw', '--data-urlencode', '--json', '-F', '--form', '--form-string', '-T', '--upload-file', '--mail-rcpt', '--mail-from')) return false;
  for (const k of ['-X', '--request']) {
    for (const m of o.opts.get(k) ?? []) if (!/^(GET|HEAD|OPTIONS)$/i.test(m)) return false;
  }
  return true;
}

function iptablesReadOnly(a: readonly string[]): boolean {
  for (const x of a) {
    if (/^--(append|insert|delete|replace|flush|delete-chain|new-chain|policy|zero|rename-chain)$/.test(x)) return false;
    if (/^-[a-zA-Z]+$/.test(x) && /[AIDRFXNPZE]/.test(x.slice(1))) return false;
  }
  return true;
}

function ipReadOnly(a: readonly string[]): boolean {
  const o = scanOptions(a, set('-n -netns -b -batch -rc -rcvbuf -l -loops -f -family'));
  const verb = o.operands[1];
  if (o.operands[0] === 'netns' && verb === 'exec') return false;
  return verb === undefined || /^(show|s|sh|list|l|ls|lst|get|g|monitor|help|dev|to|table|all|scope)$/.test(verb) || (o.operands[0] === 'monitor');
}

function awkReadOnly(a: readonly string[]): boolean {
  const o = scanOptions(a, AWK_VALUE);
  if ((o.opts.get('-i') ?? []).concat(o.opts.get('--include') ?? []).some((v) => /inplace/.test(v))) return false;
  const program = o.opts.has('-f') || o.opts.has('--file') ? undefined : o.operands[0];
  return program === undefined || !/\bprint[f]?\b[^;}\n]*>/.test(program);
}
export const AWK_VALUE = set('-F --field-separator -v --assign -f --file -i --include -l --load -E --exec -W');

const systemdReadOnly = verbIn('status show cat list-units list-unit-files list-sockets list-timers list-jobs list-dependencies list-machines list-automounts list-paths is-active is-enabled is-failed is-system-running get-default show-environment help', '-t --type -p --property -H --host -M --machine -n --lines -o --output --state --root');
const ctlReadOnly = (a: readonly string[]) => {
  const { verb } = subcommand(a, '-H --host -M --machine -p --property -o --output');
  return verb === undefined || /^(status|show|list.*|show-.*|query|statistics|session-status|user-status|seat-status|cat|get-.*|dump|dns|domain)$/.test(verb);
};

/**
 * Programs that do not change state (given these arguments). Files they are
 * told to write (redirections, -o, tee, ...) are counted separately, so a
 * reader that writes a file still changes state.
 */
const READ_ONLY: Record<string, true | ((args: readonly string[]) => boolean)> = {
  // inspection, text processing, shell builtins with no effect outside the shell
  ...Object.fromEntries(
    [
      ...set(
        'ls ll la dir vdir cat tac head tail less more most grep egrep fgrep rgrep zgrep zegrep zfgrep zcat zless zmore bzcat bzgrep bzless xzcat xzgrep xzless lzcat zstdcat rg ag ack wc cut paste join comm diff diff3 sdiff cmp colordiff md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum sum file stat du df free uptime whoami id groups logname users who w last lastb lastlog uname arch nproc lscpu lsblk lsusb lspci lsmod lshw lsof lsns lslocks lsipc lsattr getfacl getcap ps pgrep pidof pstree top htop atop btop vmstat iostat mpstat pidstat sar tty pwd echo printf true false test [ : sleep seq yes basename dirname realpath readlink which whereis type printenv locale getent dig nslookup host drill ping ping6 traceroute traceroute6 tracepath mtr whois cal ncal bc dc expr factor jq yq xq column nl rev fold fmt expand unexpand od hexdump strings base32 base64 basenc tree namei findmnt blkid man info apropos whatis help history cd pushd popd dirs read shift exit return break continue wait jobs fg bg times getconf tput clear env nice nohup stdbuf setsid time timeout ionice taskset command builtin busybox toybox xargs declare typeset local export unset set let shopt tee sort uniq iconv find sed dd openssl tar unzip gzip gunzip bzip2 bunzip2 xz unxz zstd unzstd lz4 lzma unlzma pigz xxd apt-cache dpkg-query iptables-save ip6tables-save ss netstat ipcs atq uptime sensors nvidia-smi free watch test true hostid nslookup ldd numfmt shuf tsort ptx pr',
      ),
    ].map((p) => [p, true as const]),
  ),
  sudo: (a) => a.some((x) => /^-[lvkKV]+$/.test(x) || ['--list', '--validate', '--reset-timestamp', '--remove-timestamp', '--version'].includes(x)),
  wget: (a) => !a.some((x) => /^--(post-data|post-file|body-data|body-file|method)(=|$)/.test(x)),
  git: gitReadOnly,
  docker: dockerReadOnly,
  podman: dockerReadOnly,
  nerdctl: dockerReadOnly,
  kubectl: kubectlReadOnly,
  oc: kubectlReadOnly,
  helm: verbIn('list ls status get history show search template version env lint'),
  systemctl: systemdReadOnly,
  service: (a) => a.length === 0 || a.includes('status') || a.includes('--status-all'),
  hostnamectl: ctlReadOnly,
  timedatectl: ctlReadOnly,
  localectl: ctlReadOnly,
  loginctl: ctlReadOnly,
  networkctl: ctlReadOnly,
  resolvectl: ctlReadOnly,
  machinectl: ctlReadOnly,
  journalctl: noneOf('--vacuum-size --vacuum-time --vacuum-files --rotate --flush --sync --relinquish-var --smart-relinquish-var --setup-keys --update-catalog', '-u --unit -n --lines -p --priority -S --since -U --until -o --output -b --boot -t --identifier -g --grep -D --directory --file -M --machine'),
  dmesg: noneOf('-c --read-clear -C --clear -D --console-off -E --console-on -n --console-level'),
  hwclock: noneOf('-w --systohc -s --hctosys --set --adjust --systz'),
  sysctl: (a) => !a.some((x) => x === '-w' || x === '--write' || x === '-p' || x === '--load' || x === '--system' || x.startsWith('--load=') || (x.includes('=') && !x.startsWith('-'))),
  mount: (a) => scanOptions(a, set('-t -o -O -L -U')).operands.length === 0 && !a.includes('-a') && !a.includes('--all'),
  hostname: (a) => scanOptions(a, set('-F --file')).operands.length === 0 && !a.includes('-F') && !a.includes('-b'),
  date: dateReadOnly,
  ip: ipReadOnly,
  ifconfig: (a) => a.filter((x) => !x.startsWith('-')).length <= 1,
  route: (a) => !a.some((x) => /^(add|del|delete|flush)$/.test(x)),
  iptables: iptablesReadOnly,
  ip6tables: iptablesReadOnly,
  'iptables-legacy': iptablesReadOnly,
  'iptables-nft': iptablesReadOnly,
  ebtables: iptablesReadOnly,
  arptables: iptablesReadOnly,
  nft: (a) => ['list', 'describe', 'monitor'].includes(scanOptions(a, set('-I --includepath')).operands[0] ?? '') && !a.includes('-f'),
  crontab: (a) => a.includes('-l'),
  at: (a) => a.includes('-l'),
  kill: (a) => a.some((x) => x === '-l' || x === '-L' || x === '--list' || x === '--table' || x === '-0' || x === '-s0'),
  curl: curlReadOnly,
  awk: awkReadOnly,
  gawk: awkReadOnly,
  mawk: awkReadOnly,
  nawk: awkReadOnly,
  // package managers: queries only
  apt: pkgReadOnly,
  'apt-get': (a) => ['check', 'changelog', 'help', '--version', '-v', 'moo'].includes(subcommand(a, '-c -o -t').verb ?? 'help'),
  aptitude: pkgReadOnly,
  yum: pkgReadOnly,
  dnf: pkgReadOnly,
  microdnf: pkgReadOnly,
  tdnf: pkgReadOnly,
  zypper: pkgReadOnly,
  apk: pkgReadOnly,
  snap: pkgReadOnly,
  flatpak: pkgReadOnly,
  brew: pkgReadOnly,
  pip: pkgReadOnly,
  pip3: pkgReadOnly,
  pipx: pkgReadOnly,
  npm: pkgReadOnly,
  pnpm: pkgReadOnly,
  yarn: pkgReadOnly,
  gem: pkgReadOnly,
  cargo: pkgReadOnly,
  go: pkgReadOnly,
  composer: pkgReadOnly,
  conda: pkgReadOnly,
  dpkg: (a) => {
    const ro = set('-l --list -L --listfiles -s --status -S --search -p --print-avail -c --contents -I --info --get-selections --print-architecture --print-foreign-architectures --compare-versions -C --audit -V --verify --version --help -W --show -f --field');
    const o = scanOptions(a, set('--admindir --root --instdir'));
    return o.opts.size > 0 && [...o.opts.keys()].every((k) => ro.has(k) || k === '--admindir' || k === '--root');
  },
  rpm: (a) => a.some((x) => /^-[a-zA-Z]*q/.test(x) || x === '--query' || x === '-V' || x === '--verify' || x === '-K' || x === '--checksig' || x === '--eval' || x === '-E' || x === '--version'),
  pacman: (a) => {
    const op = a.find((x) => x.startsWith('-'));
    if (!op) return false;
    if (/^-[QFTV]/.test(op) || op === '--query' || op === '--files' || op === '--version' || op === '--deptest') return true;
    return /^-S[silgqv]+$/.test(op);
  },
};

export function isReadOnly(program: string, args: readonly string[]): boolean {
  const r = READ_ONLY[program];
  if (r === undefined) return false;
  return r === true ? true : r(args);
}

// ---------------------------------------------------------------- writers

export const CURL_VALUE = set(
  '-o --output -d --data --data-ascii --data-binary --data-raw --data-urlencode --json -F --form --form-string -T --upload-file -X --request -H --header -u --user -A --user-agent -e --referer -b --cookie -c --cookie-jar -D --dump-header -K --config -x --proxy -U --proxy-user -E --cert --key --cacert --capath -m --max-time --connect-timeout -w --write-out -r --range -C --continue-at -Y --speed-limit -y --speed-time --retry --retry-delay --retry-max-time --resolve --connect-to --interface --limit-rate --max-filesize --max-redirs --trace --trace-ascii --stderr --output-dir --mail-rcpt --mail-from --oauth2-bearer -z --time-cond --proto --proto-redir --url --variable --expand-url',
);

/** A path a command writes: `recursive` when it writes the whole tree under it (rm -r, a copy's target directory). */
export interface Write {
  path: string;
  recursive?: boolean;
}

type Writer = (args: readonly string[]) => Write[];
const files = (paths: readonly string[], recursive = false): Write[] => paths.filter((p) => p !== '' && p !== '-').map((path) => ({ path, ...(recursive && { recursive }) }));

const operandsWriter = (withValue = '', recursiveOpts = '') => {
  const wv = set(withValue);
  const rec = set(recursiveOpts);
  return (a: readonly string[]) => {
    const o = scanOptions(a, wv);
    return files(o.operands, [...rec].some((r) => o.opts.has(r)));
  };
};

/** cp/mv/install/ln: the target (last operand, or -t DIR) receives files; mv also removes its sources. */
const copyWriter = (withValue: string, alsoSources: boolean) => {
  const wv = set(withValue);
  return (a: readonly string[]) => {
    const o = scanOptions(a, wv);
    const t = o.opts.get('-t') ?? o.opts.get('--target-directory');
    const target = t ? t[t.length - 1] : o.operands.length >= 2 ? o.operands[o.operands.length - 1] : undefined;
    const sources = t ? o.operands : o.operands.slice(0, -1);
    const out: Write[] = [];
    if (target !== undefined) out.push({ path: target, recursive: true });
    if (alsoSources) out.push(...files(sources));
    return out;
  };
};

/** chmod/chown/chgrp/chattr/setfacl: the first operand is the mode/owner unless --reference is given. */
const attrWriter = (withValue: string, modeOperand: boolean) => {
  const wv = set(withValue);
  return (a: readonly string[]) => {
    // chmod -x file: "-x" is a mode, not an option
    const args = a.filter((x) => !/^[-+=][rwxXstugoa]+$/.test(x) || !modeOperand);
    const modes = a.filter((x) => modeOperand && /^[-+=][rwxXstugoa]+$/.test(x));
    const o = scanOptions(args, wv);
    const rec = has(o, '-R', '--recursive');
    const ops = o.opts.has('--reference') || modes.length || !modeOperand ? o.operands : o.operands.slice(1);
    return files(ops, rec);
  };
};

const remote = (p: string) => /^[^/]*:/.test(p) && !p.startsWith('./');

export const WRITERS: Record<string, Writer> = {
  rm: operandsWriter('', '-r -R --recursive'),
  rmdir: operandsWriter(),
  unlink: operandsWriter(),
  shred: operandsWriter('-n --iterations -s --size --random-source'),
  srm: operandsWriter(),
  wipe: operandsWriter(),
  touch: operandsWriter('-d --date -r --reference -t'),
  mkdir: operandsWriter('-m --mode'),
  mknod: (a) => files(scanOptions(a, set('-m --mode -Z')).operands.slice(0, 1)),
  mkfifo: operandsWriter('-m --mode'),
  truncate: operandsWriter('-s --size -r --reference'),
  fallocate: operandsWriter('-l --length -o --offset'),
  tee: operandsWriter('--output-error'),
  cp: copyWriter('-t --target-directory -S --suffix --backup --sparse --reflink --preserve --no-preserve', false),
  mv: copyWriter('-t --target-directory -S --suffix --backup', true),
  install: (a) => {
    const wv = '-t --target-directory -m --mode -o --owner -g --group -S --suffix --backup --strip-program';
    if (a.includes('-d') || a.includes('--directory')) return files(scanOptions(a, set(wv)).operands); // install -d DIRS
    return copyWriter(wv, false)(a);
  },
  ln: (a) => {
    const o = scanOptions(a, set('-t --target-directory -S --suffix --backup'));
    const t = o.opts.get('-t') ?? o.opts.get('--target-directory');
    if (t) return files([t[t.length - 1]!], true);
    if (o.operands.length === 1) return files([o.operands[0]!.split('/').pop()!]);
    return files(o.operands.slice(-1));
  },
  link: (a) => files(a.slice(1, 2)),
  chmod: attrWriter('--reference', true),
  chown: attrWriter('--reference --from', true),
  chgrp: attrWriter('--reference', true),
  chattr: (a) => files(a.filter((x) => !/^[-+=][aAcCdDeFijmPsStTux]+$/.test(x) && !x.startsWith('-')), a.includes('-R')),
  setfacl: operandsWriter('-m --modify -M --modify-file -x --remove -X --remove-file --set --set-file', '-R --recursive'),
  chcon: attrWriter('-u --user -r --role -t --type -l --range --reference', true),
  dd: (a) => files(a.filter((x) => x.startsWith('of=')).map((x) => x.slice(3))),
  sed: (a) => {
    const o = scanOptions(a, set('-e --expression -f --file -l --line-length'));
    if (!has(o, '-i', '--in-place')) {
      // -i with an attached suffix (-i.bak) is scanned as -i then .bak letters; GNU also accepts -Ei.
      if (!a.some((x) => /^-[a-zA-Z]*i/.test(x) && !x.startsWith('--'))) return [];
    }
    const script = o.opts.has('-e') || o.opts.has('--expression') || o.opts.has('-f') || o.opts.has('--file') ? 0 : 1;
    return files(o.operands.slice(script));
  },
  sort: (a) => files([...(scanOptions(a, set('-o --output -k --key -t --field-separator -S --buffer-size -T --temporary-directory --parallel --files0-from --batch-size --compress-program')).opts.get('-o') ?? []), ...(scanOptions(a, set('-o --output -k --key -t --field-separator -S --buffer-size -T --temporary-directory')).opts.get('--output') ?? [])]),
  uniq: (a) => files(scanOptions(a, set('-f --skip-fields -s --skip-chars -w --check-chars')).operands.slice(1, 2)),
  iconv: (a) => files(scanOptions(a, set('-f --from-code -t --to-code -o --output')).opts.get('-o') ?? []),
  xxd: (a) => (a.includes('-r') || a.includes('-revert') ? files(scanOptions(a, set('-c -cols -g -groupsize -l -len -o -offset -s -seek -n -name')).operands.slice(1, 2)) : []),
  curl: (a) => {
    const o = scanOptions(a, CURL_VALUE);
    const out = [...(o.opts.get('-o') ?? []), ...(o.opts.get('--output') ?? []), ...(o.opts.get('-D') ?? []), ...(o.opts.get('--dump-header') ?? []), ...(o.opts.get('-c') ?? []), ...(o.opts.get('--cookie-jar') ?? []), ...(o.opts.get('--trace') ?? []), ...(o.opts.get('--trace-ascii') ?? [])];
    if (has(o, '-O', '--remote-name', '--remote-name-all')) {
      const dir = (o.opts.get('--output-dir') ?? [])[0];
      for (const u of o.operands) {
        const base = u.replace(/[?#].*$/, '').split('/').pop();
        if (base) out.push(dir ? `${dir}/${base}` : base);
      }
    }
    return files(out);
  },
  wget: (a) => {
    const o = scanOptions(a, set('-O --output-document -o --output-file -a --append-output -P --directory-prefix -U --user-agent --header -t --tries -T --timeout -w --wait -e --execute -i --input-file -B --base --post-data --post-file --method --body-data --body-file --user --password -l --level -A --accept -R --reject -D --domains'));
    const out: Write[] = files([...(o.opts.get('-o') ?? []), ...(o.opts.get('--output-file') ?? []), ...(o.opts.get('-a') ?? []), ...(o.opts.get('--append-output') ?? [])]);
    if (has(o, '--spider')) return out;
    const doc = [...(o.opts.get('-O') ?? []), ...(o.opts.get('--output-document') ?? [])];
    if (doc.length) return out.concat(files(doc));
    const dir = [...(o.opts.get('-P') ?? []), ...(o.opts.get('--directory-prefix') ?? [])][0];
    if (has(o, '-r', '--recursive', '-m', '--mirror')) return out.concat({ path: dir ?? '.', recursive: true });
    for (const u of o.operands) {
      const base = u.replace(/[?#].*$/, '').split('/').pop() || 'index.html';
      out.push({ path: dir ? `${dir}/${base}` : base });
    }
    return out;
  },
  tar: (a) => {
    // first word may be an old-style cluster (xzf)
    const args = a.length && !a[0]!.startsWith('-') ? ['-' + a[0], ...a.slice(1)] : a;
    const o = scanOptions(args, set('-f --file -C --directory -T --files-from -X --exclude-from -b --blocking-factor -H --format -I --use-compress-program -g --listed-incremental -V --label --transform --xform --exclude --owner --group --mode --mtime -K --starting-file -N --newer --newer-mtime'));
    const f = [...(o.opts.get('-f') ?? []), ...(o.opts.get('--file') ?? [])];
    if (has(o, '-c', '--create', '-r', '--append', '-u', '--update', '-A', '--catenate', '--concatenate', '--delete')) return files(f);
    if (has(o, '-x', '--extract', '--get')) {
      const dir = [...(o.opts.get('-C') ?? []), ...(o.opts.get('--directory') ?? [])].pop() ?? '.';
      return [{ path: dir, recursive: true }];
    }
    return [];
  },
  unzip: (a) => {
    const o = scanOptions(a, set('-d -x -P -O -I'));
    if (has(o, '-l', '-t', '-v', '-Z', '-p', '-c', '-z')) return [];
    return [{ path: (o.opts.get('-d') ?? ['.'])[0]!, recursive: true }];
  },
  gzip: (a) => {
    const o = scanOptions(a, set('-S --suffix -b --blocksize -p --processes'));
    if (has(o, '-c', '--stdout', '--to-stdout', '-l', '--list', '-t', '--test')) return [];
    return files(o.operands, has(o, '-r', '--recursive'));
  },
  rsync: (a) => {
    const o = scanOptions(a, set('-e --rsh --rsync-path --exclude --include --exclude-from --include-from --files-from -f --filter -B --block-size --backup-dir --suffix --chmod --chown --usermap --groupmap --timeout --contimeout --port --password-file --log-file --bwlimit --compare-dest --copy-dest --link-dest -T --temp-dir --max-size --min-size --partial-dir -M --remote-option --out-format'));
    const dest = o.operands[o.operands.length - 1];
    if (o.operands.length < 2 || dest === undefined || remote(dest)) return [];
    return [{ path: dest, recursive: true }];
  },
  scp: (a) => {
    const o = scanOptions(a, set('-c -D -F -i -J -l -o -P -S -X'));
    if (o.opts.has('-t')) return files(o.operands, true); // the server side of a legacy (scp -O) upload
    const dest = o.operands[o.operands.length - 1];
    if (o.operands.length < 2 || dest === undefined || remote(dest)) return [];
    return [{ path: dest, recursive: true }];
  },
  umount: operandsWriter('-t -O'),
  mount: (a) => {
    const o = scanOptions(a, set('-t -o -O -L -U --bind --rbind --move'));
    const mp = o.operands[o.operands.length - 1];
    return mp === undefined ? [] : [{ path: mp, recursive: true }];
  },
  mkswap: operandsWriter('-L -U -p'),
  wipefs: operandsWriter('-o --offset -t --types'),
  fdisk: operandsWriter('-b -c -u -L -t -C -H -S'),
  sfdisk: operandsWriter('-N -o -O'),
  parted: (a) => files(scanOptions(a, set(''), true).operands.slice(0, 1)),
  split: (a) => files([scanOptions(a, set('-a -b -C -l -n -t --additional-suffix --filter')).operands[1] ?? 'x']),
  patch: (a) => files([...(scanOptions(a, set('-i --input -o --output -p -d --directory -r -D -B -F -V -z --suffix')).opts.get('-o') ?? [])]),
  openssl: (a) => files(a.flatMap((x, i) => (x === '-out' || x === '-keyout' ? [a[i + 1] ?? ''] : []))),
  perl: (a) => (a.some((x) => /^-[a-zA-Z]*i/.test(x)) ? files(scanOptions(a, set('-e -E -I -M -m -x')).operands) : []),
  ruby: (a) => (a.some((x) => /^-[a-zA-Z]*i/.test(x)) ? files(scanOptions(a, set('-e -I -r -E -C -x -F')).operands) : []),
  sudoedit: operandsWriter('-u -g -h -p -C -D -r -t -T'),
  // editors write the files they open (view, -R: read-only mode)
  ...Object.fromEntries(
    ['vi', 'vim', 'nvim', 'nano', 'pico', 'emacs', 'ed', 'ex', 'joe', 'micro', 'mcedit', 'jed', 'kak', 'hx'].map((e) => [
      e,
      (a: readonly string[]) =>
        a.includes('-R') || a.includes('-M') || a.includes('--view')
          ? []
          : files(scanOptions(a, set('-c --cmd -S -u -U -i -T -s -w -W -q -t -r -o -O')).operands.filter((x) => !x.startsWith('+'))),
    ]),
  ),
};
for (const z of ['gunzip', 'bzip2', 'bunzip2', 'xz', 'unxz', 'zstd', 'unzstd', 'lz4', 'lzma', 'unlzma', 'pigz', 'lzop', 'brotli']) WRITERS[z] = WRITERS.gzip!;
for (const m of ['mkfs', 'mke2fs', 'badblocks']) WRITERS[m] = operandsWriter('-t -b -L -U -O -E -N -i -I -m -T -c');

export function writerFor(program: string): Writer | undefined {
  if (program.startsWith('mkfs.')) return WRITERS.mkfs;
  return WRITERS[program];
}
