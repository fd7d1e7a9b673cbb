export {
  boolOption,
  durationOption,
  enumOption,
  intOption,
  listOption,
  numberOption,
  stringOption,
} from "./config-option.ts";
export type {
  BoolOptionInit,
  ConfigOption,
  DurationOptionInit,
  EnumOptionInit,
  IntOptionInit,
  ListOptionInit,
  NumberOptionInit,
  OptionInit,
  OptionKind,
  Parsed,
  StringOptionInit,
} from "./config-option.ts";
export { ENV_PREFIX, defineConfig, loadConfig } from "./load-config.ts";
export type { ConfigOverrides, ConfigRegistry, ConfigValues, Env } from "./load-config.ts";
export { describeConfig } from "./describe-config.ts";
export { formatDuration, parseDuration } from "./duration.ts";
export { serviceEndpointOptions, serviceRuntimeOptions } from "./service-options.ts";
export { parseAddressMap } from "./address-map.ts";
export type { AddressMapOptions } from "./address-map.ts";
