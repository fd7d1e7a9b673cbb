/**
 * @expertmesh/dispatch — dispatch/combine between attention nodes and expert-workers: the wire
 * codecs of ExpertService.Dispatch (FLOAT32 / BF16 / FP8 E4M3 rows, FLOAT32 / BF16 sums) and
 * the client side, `RemoteRoutedExperts`, a RoutedExpertsBackend over one stream per worker.
 */
export {
  FP8_BLOCK,
  FP8_E4M3_MAX,
  FP8_E4M3_VALUES,
  dequantizeFp8Rows,
  encodeFp8E4M3,
  quantizeFp8Rows,
} from "./codecs/fp8-e4m3.ts";
export type { Fp8Rows } from "./codecs/fp8-e4m3.ts";
export {
  addEncodedRows,
  bytesPerValue,
  decodeRows,
  encodeRows,
  encodeSums,
  gatherEncodedRows,
  isCombineDtype,
  isRowDtype,
} from "./codecs/wire-rows.ts";
export type { CombineDtype, EncodedRows, RowDtype } from "./codecs/wire-rows.ts";
export {
  checkDispatchResponse,
  decodeDispatchRequest,
  dispatchErrorResponse,
  encodeDispatchRequest,
  encodeDispatchResponse,
  errorFromStatus,
} from "./codecs/dispatch-messages.ts";
export type {
  DecodeRequestLimits,
  DecodedDispatchRequest,
  DispatchKey,
  DispatchRequestInit,
  DispatchRequestInput,
  DispatchResponseInit,
  ExpectedResponse,
  ResponseEcho,
} from "./codecs/dispatch-messages.ts";
export { RemoteRoutedExperts } from "./client/remote-routed-experts.ts";
export type { RemoteRoutedExpertsOptions, RemoteRoutedExpertsStats } from "./client/remote-routed-experts.ts";
export { DEFAULT_CLOSE_GRACE_MS, WorkerStream } from "./client/worker-stream.ts";
export type { WorkerStreamOptions } from "./client/worker-stream.ts";
export { TcpEcho } from "./bench/tcp-echo.ts";
export { benchDispatchWire } from "./bench/dispatch-wire-bench.ts";
export type { WireBenchOptions, WireBenchResult, WireSizeResult } from "./bench/dispatch-wire-bench.ts";
