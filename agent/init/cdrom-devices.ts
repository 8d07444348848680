// The real BlockDevices: nodes under /dev (devtmpfs). blkfront announces Connected in xenstore
// just before it adds the disk, so the node may lag the event by a moment: wait for it with
// inotify (fs.watch), which devtmpfs supports, instead of polling.
import { existsSync, statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { close, O, open } from "../../ffi/libc.ts";
import type { BlockDevices } from "./cdrom.ts";

export const devNodes: BlockDevices = {
  waitFor(path, timeoutMs) {
    return new Promise<void>((resolve, reject) => {
      let watcher: FSWatcher | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (error?: Error) => {
        clearTimeout(timer);
        watcher?.close();
        if (error) reject(error);
        else resolve();
      };
      try {
        watcher = watch(dirname(path), (_event, name) => {
          if (name === basename(path) && existsSync(path)) finish();
        });
      } catch (e) {
        finish(new Error(`cannot watch ${dirname(path)}: ${(e as Error).message}`));
        return;
      }
      // Checked after the watch is armed, so a node created in between is not missed.
      if (existsSync(path)) return finish();
      timer = setTimeout(() => finish(new Error(`${path} did not appear within ${timeoutMs} ms`)), timeoutMs);
    });
  },
  identity(path) {
    // stat follows a symlink, as open does: the identity is the node the fd would be open on.
    const st = statSync(path, { throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}:${st.rdev}` : null;
  },
  openReadOnly: (path) => open(path, O.RDONLY | O.CLOEXEC),
  close: (fd) => close(fd),
};
