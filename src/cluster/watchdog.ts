/**
 * Preloaded (`node --import`) into every process `llmd up` starts. The parent holds the other end of
 * an IPC channel; when the parent goes away, however it died, the channel closes and this process
 * stops as on SIGTERM (its own clean shutdown), or exits outright if that takes too long.
 */
const GRACE_MS = 5000;

if (typeof process.send === 'function') {
  // The channel must not keep the process alive by itself, nor hold it open when it is done.
  process.channel?.unref();
  process.once('disconnect', () => {
    setTimeout(() => process.exit(1), GRACE_MS).unref();
    process.kill(process.pid, 'SIGTERM');
  });
}

export {};
