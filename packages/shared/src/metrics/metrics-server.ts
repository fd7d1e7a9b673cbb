/**
 * The ops HTTP endpoint every service runs: `GET /metrics` (Prometheus text format),
 * `GET /healthz` (liveness) and `GET /readyz` (readiness, driven by the service lifecycle so a
 * draining pod leaves the load balancer before it stops). Anything else is 404.
 */
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../logging.ts";

/** What the probes ask; `Lifecycle` (lifecycle.ts) implements it. */
export interface HealthProbe {
  isLive(): boolean;
  isReady(): boolean;
}

export interface MetricsServerOptions {
  registry: Registry;
  /** 0 picks a free port (read it back from the result). */
  port: number;
  /** "0.0.0.0" by default, so the kubelet and Prometheus can reach it. */
  host?: string;
  /** Without one the process counts as live and ready while the server runs. */
  health?: HealthProbe;
  logger?: Logger;
}

export interface MetricsServer {
  readonly port: number;
  readonly host: string;
  /** Stops listening and closes open (keep-alive) connections. */
  close(): Promise<void>;
}

const TEXT = "text/plain; charset=utf-8";

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, health, logger } = options;
  const host = options.host ?? "0.0.0.0";

  const reply = (res: ServerResponse, status: number, body: string, type = TEXT): void => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?", 1)[0];
    const route = path === "/metrics" || path === "/healthz" || path === "/readyz" ? path : undefined;
    if (route === undefined) return reply(res, 404, "not found\n");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return reply(res, 405, "method not allowed\n");
    }
    if (route === "/metrics") return reply(res, 200, await registry.metrics(), registry.contentType);
    if (route === "/healthz") {
      const live = health?.isLive() ?? true;
      return reply(res, live ? 200 : 503, live ? "ok\n" : "not live\n");
    }
    const ready = health?.isReady() ?? true;
    return reply(res, ready ? 200 : 503, ready ? "ready\n" : "not ready\n");
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger?.error({ err, url: req.url }, "metrics endpoint failed");
      if (!res.headersSent) reply(res, 500, "internal error\n");
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  logger?.debug({ host, port }, "metrics server listening");

  let closed: Promise<void> | undefined;
  return {
    port,
    host,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
