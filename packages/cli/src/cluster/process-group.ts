/**
 * Process groups, the unit the launcher starts and stops: every service runs as the leader of its
 * own group, so stopping the group stops whatever the service spawned too, and a terminal's
 * Ctrl-C reaches only the launcher, which then stops the services in order. The implementation is
 * @expertmesh/shared's (the test helpers use the same one).
 */
export { commandLine, groupMembers, signalGroup, stopGroup } from "@expertmesh/shared";
