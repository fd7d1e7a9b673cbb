/**
 * Every attention node of the static topology (EXPERTMESH_ATTENTION_ADDRESSES), one
 * AttentionNodeClient each: the AttentionPool the generation core admits requests to.
 */
import type { Logger } from "@expertmesh/shared";
import type { AttentionPool } from "../core/attention-pool.ts";
import { AttentionNodeClient } from "./attention-node-client.ts";
import type { AttentionNodeState } from "./attention-node-client.ts";

export interface AttentionNodePoolOptions {
  /** node id → host:port */
  readonly addresses: ReadonlyMap<string, string>;
  readonly pollIntervalMs: number;
  readonly logger: Logger;
}

export class AttentionNodePool implements AttentionPool {
  readonly nodes: readonly AttentionNodeClient[];
  readonly #listeners: (() => void)[] = [];

  constructor(options: AttentionNodePoolOptions) {
    this.nodes = [...options.addresses].map(
      ([id, address]) =>
        new AttentionNodeClient({
          id,
          address,
          pollIntervalMs: options.pollIntervalMs,
          logger: options.logger,
          onCapacityChange: () => {
            for (const listener of this.#listeners) listener();
          },
        }),
    );
  }

  onCapacityChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  start(): void {
    for (const node of this.nodes) node.start();
  }

  /** Waits for every node to serve; resolves with the ids of those that did not within `timeoutMs`. */
  async waitUntilServing(timeoutMs: number): Promise<string[]> {
    const results = await Promise.allSettled(this.nodes.map((n) => n.waitUntilServing(timeoutMs)));
    return this.nodes.filter((_, i) => results[i]?.status === "rejected").map((n) => n.id);
  }

  states(): AttentionNodeState[] {
    return this.nodes.map((n) => n.state());
  }

  /** Half-closes every stream and waits for them to end (cancelled when `signal` aborts). */
  async close(signal?: AbortSignal): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.close(signal)));
  }
}
