{{/*
Names, labels, and the one pod template every ExpertMesh role renders (parameterised by role).
Roles: router (Deployment), attention (StatefulSet, data-parallel ranks), expert-worker
(StatefulSet, ordinal → worker id → slice). Each role's EXPERTMESH_* settings are in one
`expertmesh.env.<role>` block; tests/helm checks them against the services' config registries.
*/}}

{{/* Chart name. */}}
{{- define "expertmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-expertmesh, or the release name when it contains the chart name. */}}
{{- define "expertmesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label: name-version. */}}
{{- define "expertmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one role's objects: <fullname>-<role>. The prefix is cut to 38 characters so that
StatefulSet pod names (<name>-<ordinal>) and controller-revision-hash labels stay within 63.
Params: dict "root" $ "role" "<role>".
*/}}
{{- define "expertmesh.componentName" -}}
{{- printf "%s-%s" (include "expertmesh.fullname" .root | trunc 38 | trimSuffix "-") .role }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "expertmesh.labels" -}}
helm.sh/chart: {{ include "expertmesh.chart" . }}
app.kubernetes.io/name: {{ include "expertmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: expertmesh
{{- end }}

{{/* Selector labels of one role. Params: dict "root" $ "role" "<role>". */}}
{{- define "expertmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "expertmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Labels of one role's objects. Params: dict "root" $ "role" "<role>". */}}
{{- define "expertmesh.componentLabels" -}}
{{ include "expertmesh.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "expertmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "expertmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "expertmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* EXPERTMESH_MODEL_DIR: mountPath, or mountPath/dir. */}}
{{- define "expertmesh.modelDir" -}}
{{- if .Values.model.dir }}
{{- printf "%s/%s" (trimSuffix "/" .Values.model.mountPath) (trimPrefix "/" .Values.model.dir) }}
{{- else }}
{{- .Values.model.mountPath }}
{{- end }}
{{- end }}

{{/* Where the placement ConfigMap is mounted; EXPERTMESH_PLACEMENT_FILE points into it. */}}
{{- define "expertmesh.placementDir" -}}
/etc/expertmesh/placement
{{- end }}

{{- define "expertmesh.placementConfigMap" -}}
{{- .Values.placement.existingConfigMap | default (printf "%s-placement" (include "expertmesh.fullname" .)) }}
{{- end }}

{{/* DNS name of pod <ordinal> of a role's StatefulSet. Params: dict "root" $ "role" "<role>" "ordinal" N. */}}
{{- define "expertmesh.podDnsName" -}}
{{- $name := include "expertmesh.componentName" (dict "root" .root "role" .role) }}
{{- printf "%s-%d.%s.%s.svc.%s" $name (int .ordinal) $name .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/* Static topology for attention nodes: w0=<worker pod 0 DNS>:<port>,… (EXPERTMESH_WORKER_ADDRESSES). */}}
{{- define "expertmesh.workerAddresses" -}}
{{- $entries := list }}
{{- range $i := until (int .Values.workers.replicas) }}
{{- $host := include "expertmesh.podDnsName" (dict "root" $ "role" "expert-worker" "ordinal" $i) }}
{{- $entries = append $entries (printf "%s%d=%s:%d" $.Values.workers.idPrefix $i $host (int $.Values.workers.ports.grpc)) }}
{{- end }}
{{- join "," $entries }}
{{- end }}

{{/* Static topology for the router: a0=<attention pod 0 DNS>:<port>,… (EXPERTMESH_ATTENTION_ADDRESSES). */}}
{{- define "expertmesh.attentionAddresses" -}}
{{- $entries := list }}
{{- range $i := until (int .Values.attention.replicas) }}
{{- $host := include "expertmesh.podDnsName" (dict "root" $ "role" "attention" "ordinal" $i) }}
{{- $entries = append $entries (printf "a%d=%s:%d" $i $host (int $.Values.attention.ports.grpc)) }}
{{- end }}
{{- join "," $entries }}
{{- end }}

{{/*
The pod's StatefulSet ordinal, from the apps.kubernetes.io/pod-index label (Kubernetes ≥ 1.28).
Not an EXPERTMESH_ name: services reject EXPERTMESH_* variables they do not know.
*/}}
{{- define "expertmesh.podIndexEnv" -}}
- name: POD_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- end }}

{{/* Settings every service shares. */}}
{{- define "expertmesh.env.common" -}}
- name: EXPERTMESH_MODEL_DIR
  value: {{ include "expertmesh.modelDir" . | quote }}
- name: EXPERTMESH_CLUSTER
  value: {{ .Values.clusterName | quote }}
- name: EXPERTMESH_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- include "expertmesh.env.redis" . }}
{{- end }}

{{/* EXPERTMESH_REDIS_URL: the bundled Redis's Service, or the external URL from a Secret; unset with redis.mode none. */}}
{{- define "expertmesh.env.redis" -}}
{{- if eq .Values.redis.mode "bundled" }}
- name: EXPERTMESH_REDIS_URL
  value: {{ printf "redis://%s.%s.svc.%s:%d" (include "expertmesh.componentName" (dict "root" . "role" "redis")) .Release.Namespace .Values.clusterDomain (int .Values.redis.bundled.port) | quote }}
{{- else if eq .Values.redis.mode "external" }}
- name: EXPERTMESH_REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.redis.external.existingSecret }}
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.existingSecretKey }}
      {{- else }}
      name: {{ include "expertmesh.fullname" . }}
      key: redis-url
      {{- end }}
{{- end }}
{{- end }}

{{- define "expertmesh.env.placement" -}}
{{- if eq .Values.placement.source "file" }}
- name: EXPERTMESH_PLACEMENT_FILE
  value: {{ printf "%s/placement.json" (include "expertmesh.placementDir" .) | quote }}
{{- end }}
{{- end }}

{{/* Router settings (services/router/src/config.ts). */}}
{{- define "expertmesh.env.router" -}}
{{ include "expertmesh.env.common" . }}
- name: EXPERTMESH_PORT
  value: {{ .Values.router.ports.grpc | quote }}
- name: EXPERTMESH_HTTP_PORT
  value: {{ .Values.router.ports.http | quote }}
- name: EXPERTMESH_ATTENTION_ADDRESSES
  value: {{ include "expertmesh.attentionAddresses" . | quote }}
{{- with .Values.model.servedName }}
- name: EXPERTMESH_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
- name: EXPERTMESH_MAX_QUEUED_REQUESTS
  value: {{ .Values.router.maxQueuedRequests | quote }}
{{- if gt (int .Values.router.maxModelLen) 0 }}
- name: EXPERTMESH_MAX_MODEL_LEN
  value: {{ .Values.router.maxModelLen | quote }}
{{- end }}
- name: EXPERTMESH_DEFAULT_MAX_TOKENS
  value: {{ .Values.router.defaultMaxTokens | quote }}
- name: EXPERTMESH_LOAD_POLL_INTERVAL
  value: {{ .Values.router.loadPollInterval | quote }}
- name: EXPERTMESH_ATTENTION_CONNECT_TIMEOUT
  value: {{ .Values.router.attentionConnectTimeout | quote }}
- name: EXPERTMESH_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int .Values.router.drainTimeoutSeconds) | quote }}
{{- if or .Values.router.apiKey.value .Values.router.apiKey.existingSecret }}
- name: EXPERTMESH_API_KEY
  valueFrom:
    secretKeyRef:
      {{- if .Values.router.apiKey.existingSecret }}
      name: {{ .Values.router.apiKey.existingSecret }}
      key: {{ .Values.router.apiKey.existingSecretKey }}
      {{- else }}
      name: {{ include "expertmesh.fullname" . }}
      key: api-key
      {{- end }}
{{- end }}
{{- end }}

{{/* Attention node settings (services/attention/src/config.ts); the id is a<ordinal>. */}}
{{- define "expertmesh.env.attention" -}}
{{ include "expertmesh.podIndexEnv" . }}
- name: EXPERTMESH_ATTENTION_ID
  value: "a$(POD_INDEX)"
{{ include "expertmesh.env.common" . }}
{{- include "expertmesh.env.placement" . }}
- name: EXPERTMESH_PORT
  value: {{ .Values.attention.ports.grpc | quote }}
- name: EXPERTMESH_METRICS_PORT
  value: {{ .Values.attention.ports.metrics | quote }}
- name: EXPERTMESH_WORKER_ADDRESSES
  value: {{ include "expertmesh.workerAddresses" . | quote }}
- name: EXPERTMESH_WIRE_DTYPE
  value: {{ .Values.attention.wireDtype | quote }}
- name: EXPERTMESH_COMBINE_DTYPE
  value: {{ .Values.attention.combineDtype | quote }}
- name: EXPERTMESH_DISPATCH_TIMEOUT
  value: {{ .Values.attention.dispatchTimeout | quote }}
- name: EXPERTMESH_WORKER_CONNECT_TIMEOUT
  value: {{ .Values.attention.workerConnectTimeout | quote }}
- name: EXPERTMESH_KV_CACHE_MB
  value: {{ .Values.attention.kvCacheMb | quote }}
- name: EXPERTMESH_KV_BLOCK_SIZE
  value: {{ .Values.attention.kvBlockSize | quote }}
- name: EXPERTMESH_MAX_BATCHED_TOKENS
  value: {{ .Values.attention.maxBatchedTokens | quote }}
- name: EXPERTMESH_MAX_RUNNING
  value: {{ .Values.attention.maxRunning | quote }}
- name: EXPERTMESH_DEFAULT_MAX_TOKENS
  value: {{ .Values.attention.defaultMaxTokens | quote }}
- name: EXPERTMESH_THREADS
  value: {{ .Values.attention.threads | quote }}
- name: EXPERTMESH_EXECUTION_PROVIDER
  value: {{ .Values.attention.executionProvider | quote }}
- name: EXPERTMESH_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int .Values.attention.drainTimeoutSeconds) | quote }}
{{- end }}

{{/*
Expert-worker settings (services/expert-worker/src/config.ts). The worker id is
<idPrefix><ordinal>; with routingNode=kubernetesNode the routing node is the Kubernetes node the
pod was scheduled on (downward API), and the worker refuses a placement that puts it elsewhere.
*/}}
{{- define "expertmesh.env.expert-worker" -}}
{{ include "expertmesh.podIndexEnv" . }}
- name: EXPERTMESH_WORKER_ID
  value: {{ printf "%s$(POD_INDEX)" .Values.workers.idPrefix | quote }}
{{- if eq .Values.workers.routingNode "kubernetesNode" }}
- name: EXPERTMESH_NODE
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}
{{ include "expertmesh.env.common" . }}
{{- include "expertmesh.env.placement" . }}
- name: EXPERTMESH_PORT
  value: {{ .Values.workers.ports.grpc | quote }}
- name: EXPERTMESH_METRICS_PORT
  value: {{ .Values.workers.ports.metrics | quote }}
- name: EXPERTMESH_LOAD_WINDOW
  value: {{ .Values.workers.loadWindow | quote }}
- name: EXPERTMESH_THREADS
  value: {{ .Values.workers.threads | quote }}
- name: EXPERTMESH_EXECUTION_PROVIDER
  value: {{ .Values.workers.executionProvider | quote }}
- name: EXPERTMESH_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int .Values.workers.drainTimeoutSeconds) | quote }}
{{- end }}

{{/* The model volume: an existing claim, a node directory, or an emptyDir the init container fills. */}}
{{- define "expertmesh.modelVolume" -}}
- name: model
  {{- if eq .Values.model.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "model.pvc.claimName is required when model.source is pvc" .Values.model.pvc.claimName }}
    readOnly: true
  {{- else if eq .Values.model.source "hostPath" }}
  hostPath:
    path: {{ required "model.hostPath.path is required when model.source is hostPath" .Values.model.hostPath.path }}
    {{- with .Values.model.hostPath.type }}
    type: {{ . }}
    {{- end }}
  {{- else }}
  emptyDir:
    {{- with .Values.model.initContainer.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}

{{/* The init container that fills the model emptyDir (model.source initContainer); never a hub download. */}}
{{- define "expertmesh.modelInitContainer" -}}
{{- $init := .Values.model.initContainer -}}
- name: model-init
  image: {{ printf "%s:%s" (required "model.initContainer.image.repository is required when model.source is initContainer" $init.image.repository) $init.image.tag | quote }}
  imagePullPolicy: {{ $init.image.pullPolicy }}
  {{- with $init.command }}
  command:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $init.args }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    - name: MODEL_DIR
      value: {{ include "expertmesh.modelDir" . | quote }}
    {{- with $init.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $init.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: model
      mountPath: {{ .Values.model.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
The one pod template of the ExpertMesh roles.
Params (dict):
  root            $
  role            "router" | "attention" | "expert-worker"
  values          the role's values (.Values.router / .attention / .workers)
  env             the role's rendered `expertmesh.env.<role>` block
  gpu             .Values.<role>.gpu when the role runs the CUDA provider, else an empty dict
  mountPlacement  mount the placement ConfigMap (roles that read EXPERTMESH_PLACEMENT_FILE)
Probes: startup and readiness ask grpc.health.v1 on the gRPC port (SERVING only once weights
are loaded, NOT_SERVING while draining); liveness asks HTTP /healthz, which stays 200 while a
pod drains, so a draining pod is taken out of rotation but not killed mid-drain.
*/}}
{{- define "expertmesh.podTemplate" -}}
{{- $root := .root }}
{{- $rv := .values }}
{{- $opsPort := ternary "http" "metrics" (hasKey $rv.ports "http") }}
{{- $resources := deepCopy ($rv.resources | default dict) }}
{{- if .gpu }}
{{- $limits := deepCopy (get $resources "limits" | default dict) }}
{{- $_ := set $limits .gpu.resourceName (int .gpu.count) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- $placementFromFile := and .mountPlacement (eq $root.Values.placement.source "file") -}}
metadata:
  labels:
    {{- include "expertmesh.componentLabels" (dict "root" $root "role" .role) | nindent 4 }}
    {{- with $rv.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if $root.Values.metrics.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ index $rv.ports $opsPort | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- if and $placementFromFile (not $root.Values.placement.existingConfigMap) }}
    # Services read the placement file once at startup: a new placement rolls the pods.
    checksum/placement: {{ $root.Values.placement.json | sha256sum }}
    {{- end }}
    {{- with $rv.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "expertmesh.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
  # Service links would inject <SERVICE>_PORT-style variables; a Service named expertmesh-…
  # yields EXPERTMESH_* names, which the services reject as unknown settings.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ add (int $rv.drainTimeoutSeconds) 15 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rv.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- if eq $root.Values.model.source "initContainer" }}
  initContainers:
    {{- include "expertmesh.modelInitContainer" $root | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .role }}
      image: {{ include "expertmesh.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command:
        {{- toYaml $rv.command | nindent 8 }}
      {{- with $rv.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $name, $port := $rv.ports }}
        - name: {{ $name }}
          containerPort: {{ $port }}
          protocol: TCP
        {{- end }}
      env:
        {{- .env | trim | nindent 8 }}
        {{- with $rv.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        grpc:
          port: {{ $rv.ports.grpc }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: {{ div (add (int $rv.startupTimeoutSeconds) 9) 10 }}
      readinessProbe:
        grpc:
          port: {{ $rv.ports.grpc }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      livenessProbe:
        httpGet:
          path: /healthz
          port: {{ $opsPort }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 6
      {{- with $resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: model
          mountPath: {{ $root.Values.model.mountPath }}
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if $placementFromFile }}
        - name: placement
          mountPath: {{ include "expertmesh.placementDir" $root }}
          readOnly: true
        {{- end }}
  volumes:
    {{- include "expertmesh.modelVolume" $root | nindent 4 }}
    # tsx keeps its compile cache in the temp dir; the root filesystem is read-only.
    - name: tmp
      emptyDir: {}
    {{- if $placementFromFile }}
    - name: placement
      configMap:
        name: {{ include "expertmesh.placementConfigMap" $root }}
        items:
          - key: placement.json
            path: placement.json
    {{- end }}
  {{- with $rv.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rv.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rv.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rv.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Install-time checks the schema cannot express: the placement JSON parses, is
expertmesh.placement/v1, and names exactly the workers the StatefulSet runs
(<idPrefix>0 … <idPrefix><replicas-1>).
*/}}
{{- define "expertmesh.checkPlacement" -}}
{{- if and (eq .Values.placement.source "file") (not .Values.placement.existingConfigMap) }}
{{- $json := required "placement.json is required when placement.source is file (e.g. --set-file placement.json=placement.json), or set placement.existingConfigMap" .Values.placement.json }}
{{- $doc := fromJson $json }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "placement.json is not valid JSON: %v" $doc.Error) }}
{{- end }}
{{- if ne (toString $doc.format) "expertmesh.placement/v1" }}
{{- fail (printf "placement.json: format is %q, expected \"expertmesh.placement/v1\"" (toString $doc.format)) }}
{{- end }}
{{- $ids := list }}
{{- range $w := ($doc.workers | default list) }}
{{- $ids = append $ids (toString $w.workerId) }}
{{- end }}
{{- if ne (len $ids) (int .Values.workers.replicas) }}
{{- fail (printf "placement.json lists %d workers but workers.replicas is %d: every worker in the placement needs its pod" (len $ids) (int .Values.workers.replicas)) }}
{{- end }}
{{- range $i := until (int .Values.workers.replicas) }}
{{- $want := printf "%s%d" $.Values.workers.idPrefix $i }}
{{- if not (has $want $ids) }}
{{- fail (printf "placement.json has no worker %q, but worker pod %d runs as %q (workers.idPrefix + ordinal); its workers are %s" $want $i $want (join ", " $ids)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
