{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "telemetry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it contains the chart name. */}}
{{- define "telemetry.fullname" -}}
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

{{- define "telemetry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "telemetry.labels" -}}
helm.sh/chart: {{ include "telemetry.chart" . }}
app.kubernetes.io/name: {{ include "telemetry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: telemetry
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "gateway"). */}}
{{- define "telemetry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telemetry.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "telemetry.componentLabels" -}}
{{ include "telemetry.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Name of a component's ServiceAccount. */}}
{{- define "telemetry.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" }}
{{- if $sa.create }}
{{- default (printf "%s-%s" (include "telemetry.fullname" .ctx) .component) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{- define "telemetry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the gateway's write-keys file is mounted. */}}
{{- define "telemetry.writeKeysDir" -}}
/etc/telemetry/write-keys
{{- end }}

{{/*
Environment of the gateway, as a dict of env var -> string value: the
ConfigMap's data. gateway.env entries override.
*/}}
{{- define "telemetry.gatewayEnv" -}}
{{- $g := .Values.gateway }}
{{- $c := $g.config }}
{{- $env := dict
  "GATEWAY_ADDR" (printf ":%d" (int $g.ports.http))
  "GATEWAY_METRICS_ADDR" (printf ":%d" (int $g.ports.metrics))
  "KINESIS_STREAM" .Values.aws.streamName
  "AWS_REGION" .Values.aws.region
  "GATEWAY_LEGACY_SOURCE" $c.legacySource
  "GATEWAY_MAX_EVENT_BYTES" (toString (int64 $c.maxEventBytes))
  "GATEWAY_MAX_REQUEST_BYTES" (toString (int64 $c.maxRequestBytes))
  "GATEWAY_ACK_TIMEOUT" $c.ackTimeout
  "GATEWAY_LINGER" $c.linger
  "GATEWAY_MAX_RECORD_BYTES" (toString (int64 $c.maxRecordBytes))
  "GATEWAY_MAX_BUFFER_BYTES" (toString (int64 $c.maxBufferBytes))
  "GATEWAY_MAX_IN_FLIGHT" (toString (int64 $c.maxInFlight))
  "GATEWAY_RETRY_TIMEOUT" $c.retryTimeout
  "GATEWAY_DRAIN_DELAY" (printf "%ds" (int $g.drainDelaySeconds))
  "GATEWAY_SHUTDOWN_TIMEOUT" (printf "%ds" (int $g.shutdownTimeoutSeconds))
  "GATEWAY_READ_HEADER_TIMEOUT" $c.readHeaderTimeout
  "GATEWAY_BODY_TIMEOUT" $c.bodyTimeout
  "GATEWAY_IDLE_TIMEOUT" $c.idleTimeout
  "GATEWAY_MAX_HEADER_BYTES" (toString (int64 $c.maxHeaderBytes))
  "GATEWAY_CORS_ORIGINS" $c.corsOrigins
  "GATEWAY_TRUSTED_PROXIES" (toString (int64 $c.trustedProxies))
  "GATEWAY_TRUNCATE_IP" (toString $c.truncateIP)
  "GATEWAY_KEY_RATE" (toString $c.keyRate)
  "GATEWAY_KEY_BURST" (toString (int64 $c.keyBurst))
  "GATEWAY_WRITE_KEYS_RELOAD" $c.writeKeysReload
  "LOG_LEVEL" $c.logLevel
}}
{{- if .Values.existingSecret.name }}
{{- $_ := set $env "GATEWAY_WRITE_KEYS_FILE" (printf "%s/%s" (include "telemetry.writeKeysDir" .) .Values.existingSecret.gatewayWriteKeysKey) }}
{{- end }}
{{- range $k, $v := $g.env }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Environment of the worker, as for the gateway. */}}
{{- define "telemetry.workerEnv" -}}
{{- $w := .Values.worker }}
{{- $c := $w.config }}
{{- $env := dict
  "KINESIS_STREAM" .Values.aws.streamName
  "AWS_REGION" .Values.aws.region
  "WORKER_APP" $c.app
  "WORKER_LEASE_TABLE" ($c.leaseTable | default $c.app)
  "WORKER_HEALTH_ADDR" (printf ":%d" (int $w.ports.health))
  "WORKER_METRICS_ADDR" (printf ":%d" (int $w.ports.metrics))
  "WORKER_SHARD_SYNC_INTERVAL" $c.shardSyncInterval
  "WORKER_LEASE_DURATION" $c.leaseDuration
  "WORKER_LEASE_REFRESH" $c.leaseRefresh
  "WORKER_BALANCE_INTERVAL" $c.balanceInterval
  "WORKER_MAX_LEASES" (toString (int64 $c.maxLeases))
  "WORKER_READ_INTERVAL" $c.readInterval
  "WORKER_REDRIVE_INTERVAL" $c.redriveInterval
  "WORKER_MEMORY_BUDGET" $c.memoryBudget
  "WORKER_MAX_RECORDS" (toString (int64 $c.maxRecords))
  "WORKER_IDLE_TIME" $c.idleTime
  "WORKER_SINK_TIMEOUT" $c.sinkTimeout
  "WORKER_RETRY_BUDGET" $c.retryBudget
  "WORKER_BREAKER_FAILURES" (toString (int64 $c.breakerFailures))
  "WORKER_BREAKER_OPEN_TIMEOUT" $c.breakerOpenTimeout
  "WORKER_SHUTDOWN_TIMEOUT" (printf "%ds" (int $w.shutdownTimeoutSeconds))
  "DEADLETTER_BUCKET" $c.deadLetterBucket
  "DEADLETTER_PREFIX" $c.deadLetterPrefix
  "SINK_FILE_PATH" $c.fileSinkPath
  "LOG_LEVEL" $c.logLevel
}}
{{- $seg := $w.sinks.segment }}
{{- $ga4 := $w.sinks.ga4 }}
{{- $s3 := $w.sinks.s3 }}
{{- $ddb := $w.sinks.dynamodb }}
{{- $env = merge $env (dict
  "SEGMENT_ENDPOINT" $seg.endpoint
  "SEGMENT_TIMEOUT" $seg.timeout
  "GA4_MEASUREMENT_ID" $ga4.measurementId
  "GA4_ENDPOINT" $ga4.endpoint
  "GA4_VALIDATE" (toString $ga4.validate)
  "GA4_SHARED_USER_IDS" $ga4.sharedUserIds
  "GA4_CONCURRENCY" (toString (int64 $ga4.concurrency))
  "GA4_TIMEOUT" $ga4.timeout
  "S3_BUCKET" $s3.bucket
  "S3_PREFIX" $s3.prefix
  "S3_ERROR_PREFIX" $s3.errorPrefix
  "S3_BUFFER_BYTES" (toString (int64 $s3.bufferBytes))
  "S3_BUFFER_INTERVAL" $s3.bufferInterval
  "S3_MULTIPART_THRESHOLD" (toString (int64 $s3.multipartThreshold))
  "S3_MAX_EVENT_BYTES" (toString (int64 $s3.maxEventBytes))
  "S3_HONOR_INTEGRATIONS" (toString (default false $s3.honorIntegrations))
  "DYNAMODB_COUNTS_TABLE" $ddb.countsTable
  "DYNAMODB_COUNT_DIMENSIONS" $ddb.countDimensions
  "DYNAMODB_COUNT_EVENTS" $ddb.countEvents
  "DYNAMODB_COUNT_PARALLELISM" (toString (int64 $ddb.countParallelism))
  "DYNAMODB_COUNT_FLUSH_EVENTS" (toString (int64 $ddb.countFlushEvents))
  "DYNAMODB_COUNT_FLUSH_INTERVAL" $ddb.countFlushInterval
) }}
{{- range $k, $v := $w.env }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Shared container hardening: non-root, read-only root, no capabilities. */}}
{{- define "telemetry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "telemetry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Cross-field checks the JSON schema cannot express. Included by every
template that depends on them, so `helm template` fails with the reason.
*/}}
{{- define "telemetry.validate" -}}
{{- if lt (int .Values.keda.maxReplicaCount) (int .Values.keda.minReplicaCount) }}
{{- fail (printf "keda.maxReplicaCount (%d) must be >= keda.minReplicaCount (%d)" (int .Values.keda.maxReplicaCount) (int .Values.keda.minReplicaCount)) }}
{{- end }}
{{- if lt (int .Values.gateway.autoscaling.maxReplicas) (int .Values.gateway.autoscaling.minReplicas) }}
{{- fail (printf "gateway.autoscaling.maxReplicas (%d) must be >= gateway.autoscaling.minReplicas (%d)" (int .Values.gateway.autoscaling.maxReplicas) (int .Values.gateway.autoscaling.minReplicas)) }}
{{- end }}
{{- if eq (int .Values.gateway.ports.http) (int .Values.gateway.ports.metrics) }}
{{- fail "gateway.ports.http and gateway.ports.metrics must differ" }}
{{- end }}
{{- if eq (int .Values.worker.ports.health) (int .Values.worker.ports.metrics) }}
{{- fail "worker.ports.health and worker.ports.metrics must differ" }}
{{- end }}
{{- end }}

{{/*
Topology spread of one component: its own constraints when given, else
(unless defaultTopologySpread is false) a soft spread over zones and nodes,
so that one zone or node going down takes few replicas with it and the
scheduler still places pods when it cannot spread.
*/}}
{{- define "telemetry.topologySpread" -}}
{{- $c := index .ctx.Values .component }}
{{- if $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $c.topologySpreadConstraints | nindent 2 }}
{{- else if $c.defaultTopologySpread }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "telemetry.selectorLabels" (dict "ctx" $.ctx "component" $.component) | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end }}
