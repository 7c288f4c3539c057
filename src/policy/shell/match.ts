// Glob matching for the shell-command rule conditions (commands, args, writes).
//
// - commands: a glob without '/' is matched against the program's basename
//   (`rm`, `mkfs*`); with '/' against the program word as written when it is a
//   path (`/usr/local/bin/*`), so it never matches a bare `rm` found via PATH.
// - args: `*` matches any characters (also '/'), `?` one; some argument matches.
// - writes: `*` and `?` stay within a path segment, `**` crosses segments, and
//   a glob ending in `/**` also matches the directory itself (`/etc/**` matches
//   `/etc`). A glob without '/' is matched against the basename. A written tree
//   (`dir/**`, from rm -r, chmod -R, a copy into a directory, tar -x, …)
//   matches every glob that may name something inside it: `/etc/passwd`,
//   `/etc/**` and `*.conf` all match `rm -rf /`. A written path with shell
//   wildcards (`rm -rf /*`) counts as the whole directory it lists (`/`). A path
//   built at run time (`$DIR/x`) is matched as written.

import { posix } from 'node:path';
import { anyCharsRe, pathGlobSource } from '../glob.js';

const pathRe = (glob: string): RegExp => new RegExp(pathGlobSource(glob));

export function compileCommandGlobs(globs: readonly string[]): (program: string, path: string | undefined) => boolean {
  const byName = globs.filter((g) => !g.includes('/')).map((g) => anyCharsRe(g));
  const byPath = globs.filter((g) => g.includes('/')).map((g) => pathRe(posix.normalize(g)));
  return (program, path) => byName.some((re) => re.test(program)) || (path !== undefined && byPath.some((re) => re.test(posix.normalize(path))));
}

export function compileArgGlobs(globs: readonly string[]): (arg: string) => boolean {
  const res = globs.map((g) => anyCharsRe(g));
  return (arg) => res.some((re) => re.test(arg));
}

export function compileWriteGlobs(globs: readonly string[]): (written: string) => boolean {
  const compiled = globs.map((g) => {
    if (!g.includes('/')) return { base: anyCharsRe(g) };
    const n = g.length > 1 && g.endsWith('/') ? g + '**' : g; // "/etc/" means the directory and below
    const norm = n.endsWith('/**') ? posix.normalize(n.slice(0, -3)).replace(/\/$/, '') + '/**' : posix.normalize(n);
    const glob = norm.search(/[*?]/);
    return { re: pathRe(norm), literal: glob < 0 ? norm : norm.slice(0, glob), glob: glob >= 0 };
  });
  return (written) => {
    let tree = written.endsWith('/**');
    let path = tree ? written.slice(0, -3) || '/' : written;
    const wild = path.search(/[*?[]/);
    if (wild >= 0) {
      // a wildcard the shell expands (rm -rf /*, rm /etc/*.conf): the whole directory it lists
      const cut = path.lastIndexOf('/', wild);
      path = cut < 0 ? '.' : cut === 0 ? '/' : path.slice(0, cut);
      tree = true;
    }
    const below = path === '/' ? '/' : path + '/';
    for (const c of compiled) {
      if (c.base) {
        if (tree || c.base.test(posix.basename(path))) return true;
        continue;
      }
      if (c.re!.test(path)) return true;
      // a tree: the glob may name something inside it
      if (tree && (c.literal!.startsWith(below) || (c.glob && below.startsWith(c.literal!)))) return true;
    }
    return false;
  };
}
