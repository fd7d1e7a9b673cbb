/**
 * Reusable float32 scratch buffers for per-step temporaries (padded attention batches, masks),
 * so steady-state steps do not allocate (and garbage-collect) megabytes each. Buffers are
 * checked out and returned, so concurrent forward passes never share one.
 */
export class BufferPool {
  private readonly free: Float32Array[] = [];

  /** A buffer of exactly `n` values (a view of a pooled allocation); contents are unspecified. */
  acquire(n: number): Float32Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i] as Float32Array;
      if (f.length >= n && (best < 0 || f.length < (this.free[best] as Float32Array).length)) best = i;
    }
    // headroom so that slowly growing requests (one more context row per decode step) reuse it
    const buf =
      best < 0
        ? new Float32Array(Math.max(1024, Math.ceil(n * 1.25)))
        : (this.free.splice(best, 1)[0] as Float32Array);
    return buf.subarray(0, n);
  }

  /** Returns a buffer from `acquire` to the pool. */
  release(view: Float32Array): void {
    const whole = new Float32Array(view.buffer, 0, view.buffer.byteLength / 4);
    if (this.free.length < 32) this.free.push(whole);
  }
}
