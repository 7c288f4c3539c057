// Keeps the recording store from filling the page cache.
//
// Recorded frames are written once and read rarely (a replay, an export), yet every byte LMDB
// writes lands in the kernel's page cache and stays there, evicting pages that the host's other
// work would reuse. Growing the cache has a price of its own: each new page must be allocated, and
// on VMs whose hypervisor takes free guest memory back (free page reporting), first touching it
// costs far more than the copy. On the 2-core benchmark VM, writing a new 3 GB file cost 2.5–3.0 ms
// of kernel CPU per MB; dropping the file's clean pages after each 64 MB brought it to 0.3 ms/MB,
// because the kernel then reuses the pages it just freed.
//
// So after every DROP_EVERY bytes stored, once they are durable (clean pages only can be dropped),
// the writer asks the kernel to drop the data file's cached pages: posix_fadvise(POSIX_FADV_DONTNEED)
// over the whole file. Node has no binding for it and a native addon would need a compiler on every
// install, so this runs coreutils `dd iflag=nocache count=0`, which makes exactly that call and reads
// nothing. Pages mapped by readers stay; LMDB reads back the few tree pages its next write needs.
// Without GNU dd (busybox, macOS) this turns itself off after the first failure: the store works
// the same, with the page cache left to the kernel.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes stored between two drops. */
export const DROP_EVERY = 64 << 20;

/** coreutils dd, if this machine has it where it should be (not looked up in PATH). */
export const DD = ['/usr/bin/dd', '/bin/dd'].find((p) => existsSync(p));

export class PageCacheDropper {
  private since = 0;
  private running = false;
  private off = DD === undefined;
  private readonly file: string;

  /** durable: resolves once everything written so far is on disk (lmdb's `flushed`). */
  constructor(
    dir: string,
    private readonly durable: () => PromiseLike<unknown>,
    private readonly onDisabled: (why: string) => void,
  ) {
    this.file = join(dir, 'data.mdb');
  }

  /** Counts bytes just stored; drops the cache once DROP_EVERY of them are durable. */
  stored(bytes: number): void {
    if (this.off) return;
    this.since += bytes;
    if (this.since < DROP_EVERY || this.running) return;
    this.since = 0;
    this.running = true;
    const done = (): void => {
      this.running = false;
    };
    void Promise.resolve(this.durable()).then(() => this.drop(done), done);
  }

  private drop(done: () => void): void {
    execFile(DD!, [`if=${this.file}`, 'iflag=nocache', 'count=0', 'status=none'], { timeout: 10_000 }, (err, _out, stderr) => {
      done();
      if (!err) return;
      this.off = true;
      this.onDisabled(`${DD} iflag=nocache failed (${String(stderr).trim() || err.message}); the recording store leaves its page cache to the kernel`);
    });
  }
}
