/**
 * Flushes the worker's load counts to Redis once per window, at window boundaries: counts
 * gathered during window w = floor(t / windowMs) are flushed under w just after it ends. A failed
 * flush keeps the counts for the next one (LoadRecorder adds them back). `stop` flushes what is left.
 */
import type { LoadRecorder } from "@expertmesh/placement";
import type { Logger } from "@expertmesh/shared";

export interface LoadFlusherOptions {
  readonly recorder: LoadRecorder;
  readonly windowMs: number;
  readonly logger: Logger;
  /** Called after every flush attempt. */
  readonly onFlush?: (outcome: "ok" | "error", rows: number) => void;
  /** The clock (epoch ms); Date.now by default. */
  readonly now?: () => number;
}

export class LoadFlusher {
  readonly #options: LoadFlusherOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: LoadFlusherOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    this.#schedule();
  }

  /** Stops the timer and flushes the remaining counts under the current window. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#flushing;
    await this.#flush(Math.floor(this.#now() / this.#options.windowMs));
  }

  #schedule(): void {
    if (this.#stopped) return;
    const { windowMs } = this.#options;
    const now = this.#now();
    const window = Math.floor(now / windowMs);
    // A few ms past the boundary, so the window just ended is complete.
    this.#timer = setTimeout(
      () => {
        this.#flushing = this.#flush(window).finally(() => this.#schedule());
      },
      (window + 1) * windowMs - now + 5,
    );
    this.#timer.unref();
  }

  async #flush(window: number): Promise<void> {
    const { recorder, logger, onFlush } = this.#options;
    try {
      const result = await recorder.flush(window);
      if (result.fields > 0)
        logger.debug({ window, key: result.key, rows: result.rows }, "load window flushed");
      onFlush?.("ok", result.rows);
    } catch (err) {
      logger.warn(
        { err, window, pendingRows: recorder.pendingRows() },
        "load window flush failed; counts kept for the next one",
      );
      onFlush?.("error", 0);
    }
  }
}
