/**
 * The router's HTTP server (node:http): the OpenAI-compatible API under /v1 (Bearer API key when
 * configured), and the ops endpoints /metrics, /health (vLLM's), /healthz and /readyz. Errors
 * are OpenAI-style JSON bodies whose status comes from the one error mapping (toWireStatus).
 */
import { timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { HealthProbe, Logger, Registry } from "@expertmesh/shared";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import type { GenerationService } from "../core/generation.ts";
import type { HttpCall } from "./http-call.ts";
import { handleChatCompletions } from "./openai-chat.ts";
import { handleCompletions } from "./openai-completions.ts";
import { TokenNamer, httpError, openAiError } from "./openai-format.ts";
import type { OpenAiErrorBody } from "./openai-format.ts";
import type { JsonObject } from "./openai-params.ts";

/**
 * More routes under /v1 (the API key applies), e.g. the batch jobs' `/v1/batch_jobs…`: a JSON
 * response, or a thrown error turned into an OpenAI-style error body like any other.
 */
export interface ExtraHttpRoutes {
  matches(path: string): boolean;
  handle(request: {
    readonly method: string;
    readonly path: string;
    readonly query: URLSearchParams;
    readonly body: () => Promise<unknown>;
  }): Promise<{ readonly status: number; readonly body: unknown }>;
}

export interface HttpApiOptions {
  readonly generation: GenerationService;
  readonly tokenizer: TextTokenizer | null;
  readonly registry: Registry;
  readonly health: HealthProbe;
  readonly logger: Logger;
  /** When set, /v1/* needs `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string | undefined;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly extraRoutes?: ExtraHttpRoutes;
}

export interface HttpApi {
  readonly port: number;
  /** Stops accepting connections; open responses may finish for `graceMs`, then sockets are closed. */
  close(graceMs?: number): Promise<void>;
}

/** Request bodies above this are 413. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

type Route = (call: HttpCall, body: JsonObject) => Promise<void>;
const POST_ROUTES: Readonly<Record<string, Route>> = {
  "/v1/completions": handleCompletions,
  "/v1/chat/completions": handleChatCompletions,
};

export async function startHttpApi(options: HttpApiOptions): Promise<HttpApi> {
  const { generation, registry, health, logger } = options;
  const tokenNamer = new TokenNamer(options.tokenizer);
  const created = Math.floor(Date.now() / 1000);
  const apiKey = options.apiKey === undefined ? undefined : Buffer.from(`Bearer ${options.apiKey}`);

  const sendText = (
    res: ServerResponse,
    status: number,
    text: string,
    type = "text/plain; charset=utf-8",
  ): void => {
    res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
    res.end(text);
  };
  const sendError = (res: ServerResponse, e: { status: number; body: OpenAiErrorBody }): void => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const text = JSON.stringify(e.body);
    res.writeHead(e.status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const method = req.method ?? "GET";
    if (path === "/metrics" || path === "/healthz" || path === "/readyz" || path === "/health") {
      if (method !== "GET" && method !== "HEAD")
        return sendError(res, httpError(405, `${method} not allowed on ${path}`));
      if (path === "/metrics") return sendText(res, 200, await registry.metrics(), registry.contentType);
      if (path === "/healthz")
        return sendText(res, health.isLive() ? 200 : 503, health.isLive() ? "ok\n" : "not live\n");
      return sendText(res, health.isReady() ? 200 : 503, health.isReady() ? "ready\n" : "not ready\n");
    }
    if (!path.startsWith("/v1/")) return sendError(res, httpError(404, `no route ${path}`));
    if (apiKey !== undefined && !authorized(req, apiKey)) {
      return sendError(
        res,
        openAiError(
          new ExpertMeshError(
            Code.UNAUTHENTICATED,
            "invalid or missing API key (Authorization: Bearer <key>)",
          ),
        ),
      );
    }
    if (path === "/v1/models") {
      if (method !== "GET") return sendError(res, httpError(405, `${method} not allowed on ${path}`));
      const { name, maxModelLen } = generation.model;
      const body = {
        object: "list",
        data: [
          {
            id: name,
            object: "model",
            created,
            owned_by: "expertmesh",
            root: name,
            parent: null,
            max_model_len: maxModelLen,
          },
        ],
      };
      return sendText(res, 200, JSON.stringify(body), "application/json");
    }
    if (options.extraRoutes?.matches(path) === true) {
      const url = new URL(req.url ?? "/", "http://router");
      const reply = await options.extraRoutes.handle({
        method,
        path,
        query: url.searchParams,
        body: () => readJsonBody(req),
      });
      return sendText(res, reply.status, JSON.stringify(reply.body), "application/json");
    }
    const route = POST_ROUTES[path];
    if (route === undefined) return sendError(res, httpError(404, `no route ${path}`));
    if (method !== "POST") return sendError(res, httpError(405, `${method} not allowed on ${path}`));

    // The client going away aborts its generation (the node then frees the sequence's KV blocks).
    const controller = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) controller.abort(new ExpertMeshError(Code.CANCELLED, "client disconnected"));
    });
    const body = await readJsonBody(req);
    const requestIdHeader = req.headers["x-request-id"];
    const call: HttpCall = {
      req,
      res,
      signal: controller.signal,
      requestId: typeof requestIdHeader === "string" && requestIdHeader !== "" ? requestIdHeader : undefined,
      generation,
      tokenizer: options.tokenizer,
      tokenNamer,
    };
    await route(call, body);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = openAiError(err);
      if (e.status >= 500 && e.status !== 503) logger.error({ err, url: req.url }, "http request failed");
      sendError(res, e);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closed: Promise<void> | undefined;
  return {
    port,
    close(graceMs = 2_000) {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), graceMs).unref();
      });
      return closed;
    },
  };
}

function authorized(req: IncomingMessage, expected: Buffer): boolean {
  const given = Buffer.from(req.headers.authorization ?? "");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJsonBody(req: IncomingMessage): Promise<JsonObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `request body exceeds ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, "the request body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, "the request body must be a JSON object");
  }
  return value as JsonObject;
}
