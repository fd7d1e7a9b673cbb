/**
 * A TCP port that was free a moment ago, for child processes that must be told their port up
 * front. A child that loses the race fails to bind and the launch reports it.
 */
export { freePort } from "@expertmesh/shared";
