{{/* Names, labels, images, security contexts and connection settings shared by the templates. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "bp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: RELEASE-booking-platform (or just RELEASE when it
already holds the chart name), or fullnameOverride. Each object appends its component
("-api", "-redis-connection"...), so the prefix keeps to 40 characters: 40 + 1 + the
longest component (16) stays within Kubernetes' 63, and a StatefulSet (40 + 1 + 10)
within the 52 its pods' `controller-revision-hash` label allows. A longer prefix is cut
to 34 characters plus a hash of the whole, so names never lose their component (two
Deployments would collide) and two long releases never share a prefix.
*/}}
{{- define "bp.fullname" -}}
{{- $full := "" }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $full = ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) }}
{{- end }}
{{- if gt (len $full) 40 }}
{{- printf "%s-%s" ($full | trunc 34 | trimSuffix "-") ($full | sha256sum | trunc 5) }}
{{- else }}
{{- $full }}
{{- end }}
{{- end }}

{{/* Name of one component's resources: (dict "root" $ "component" "api"). Never truncated: see bp.fullname. */}}
{{- define "bp.componentName" -}}
{{- $name := printf "%s-%s" (include "bp.fullname" .root) .component }}
{{- if gt (len $name) 63 }}
{{- fail (printf "the name %s is %d characters, over Kubernetes' 63: component names must stay within 16 characters" $name (len $name)) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "bp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource of one component: (dict "root" $ "component" "api"). */}}
{{- define "bp.labels" -}}
helm.sh/chart: {{ include "bp.chart" .root }}
{{ include "bp.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: booking-platform
{{- end }}

{{/* Labels a component's Deployment selects its pods by. */}}
{{- define "bp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels shared by every pod of the release (NetworkPolicies select them). */}}
{{- define "bp.releaseSelector" -}}
app.kubernetes.io/name: {{ include "bp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Pod template metadata labels: component labels plus podLabels. */}}
{{- define "bp.podLabels" -}}
{{ include "bp.labels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A service image reference: (dict "root" $ "image" .Values.api.image). `latest` is refused. */}}
{{- define "bp.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail (printf "image %s: the tag \"latest\" is refused; set a version" .image.repository) }}
{{- end }}
{{- $repo := .image.repository }}
{{- with .root.Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* A third-party image (bundled servers): repository:tag as given. */}}
{{- define "bp.thirdPartyImage" -}}
{{- if eq (toString .tag) "latest" }}
{{- fail (printf "image %s: the tag \"latest\" is refused; set a version" .repository) }}
{{- end }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}

{{/* Pod-level security context of the service pods. */}}
{{- define "bp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context of every container (restricted Pod Security Standard). */}}
{{- define "bp.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Scheduling and pull secrets shared by every pod. */}}
{{- define "bp.podScheduling" -}}
{{- include "bp.podSchedulingFor" (dict "root" . "own" (dict)) }}
{{- end }}

{{/* The same, where a component's own nodeSelector, tolerations or affinity (when not
empty) replace the chart-wide ones: (dict "root" $ "own" $w). */}}
{{- define "bp.podSchedulingFor" -}}
{{- $root := .root -}}
{{- $own := .own -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with ($own.nodeSelector | default $root.Values.nodeSelector) }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($own.tolerations | default $root.Values.tolerations) }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($own.affinity | default $root.Values.affinity) }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($own.priorityClassName | default $root.Values.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints of one component's pods: (dict "root" $ "component" "api").
spreadPreset `soft` (the default) prefers other nodes and zones and never blocks
scheduling; `hard` requires other nodes (zones stay preferred, so a one-zone cluster
still schedules); your own topologySpreadConstraints replace the preset. Each counts
this component's pods of the same rollout only (`pod-template-hash`), so a new
ReplicaSet is spread by itself rather than around the old one's pods.
*/}}
{{- define "bp.topologySpread" -}}
{{- $v := .root.Values }}
{{- $selector := dict "matchLabels" (include "bp.selectorLabels" . | fromYaml) }}
{{- $out := list }}
{{- if $v.topologySpreadConstraints }}
{{- range $v.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" $selector }}
{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- else if ne $v.spreadPreset "none" }}
{{- $nodes := ternary "DoNotSchedule" "ScheduleAnyway" (eq $v.spreadPreset "hard") }}
{{- range $key, $when := dict "kubernetes.io/hostname" $nodes "topology.kubernetes.io/zone" "ScheduleAnyway" }}
{{- $out = append $out (dict "maxSkew" 1 "topologyKey" $key "whenUnsatisfiable" $when "labelSelector" $selector "matchLabelKeys" (list "pod-template-hash")) }}
{{- end }}
{{- end }}
{{- with $out }}
topologySpreadConstraints:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The ServiceAccount of the API, relay and worker pods. */}}
{{- define "bp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bp.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "bp.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Non-empty when the chart runs the operator: it is enabled, and no external autoscaler scales the workers. */}}
{{- define "bp.operatorRuns" -}}
{{- if and .Values.operator.enabled (eq .Values.workerAutoscaling "operator") }}true{{ end }}
{{- end }}

{{/* Non-empty when one worker has a QueueScaler: (dict "root" $ "worker" $w). */}}
{{- define "bp.workerScaledByOperator" -}}
{{- if and (include "bp.operatorRuns" .root) .worker.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/* Non-empty when a worker Deployment leaves `replicas` to an autoscaler (ours or another): (dict "root" $ "worker" $w). */}}
{{- define "bp.workerReplicasManaged" -}}
{{- if or (include "bp.workerScaledByOperator" .) (eq .root.Values.workerAutoscaling "external") }}true{{ end }}
{{- end }}

{{/* The labels of this release's QueueScalers, as a selector: the operator acts on these, the cleanup hook deletes these. */}}
{{- define "bp.operatorSelector" -}}
{{- printf "app.kubernetes.io/instance=%s,app.kubernetes.io/name=%s" .Release.Name (include "bp.name" .) }}
{{- end }}

{{/* The KopfPeering of this release's operator: operator.peering.name, else one of the release's own. */}}
{{- define "bp.peeringName" -}}
{{- .Values.operator.peering.name | default (include "bp.componentName" (dict "root" . "component" "operator")) }}
{{- end }}

{{- define "bp.connectionsSecret" -}}
{{- include "bp.componentName" (dict "root" . "component" "connections") }}
{{- end }}

{{/*
Where a connection URL lives: a dict {name, key} of a Secret.
(dict "root" $ "what" "database"|"redis"|"smtp")
Bundled server first, then an existing Secret, then the chart's own Secret from the inline URL.
*/}}
{{- define "bp.urlRef" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- if eq .what "database" }}
  {{- if $v.postgresql.enabled }}
name: {{ include "bp.componentName" (dict "root" $root "component" "postgresql") }}
key: DATABASE_URL
  {{- else if $v.externalDatabase.existingSecret }}
name: {{ $v.externalDatabase.existingSecret }}
key: {{ $v.externalDatabase.existingSecretKey }}
  {{- else if $v.externalDatabase.url }}
name: {{ include "bp.connectionsSecret" $root }}
key: DATABASE_URL
  {{- else }}
  {{- fail "No database: set externalDatabase.url or externalDatabase.existingSecret (or postgresql.enabled=true for a try-out)" }}
  {{- end }}
{{- else if eq .what "redis" }}
  {{- if $v.redis.enabled }}
name: {{ include "bp.componentName" (dict "root" $root "component" "redis") }}
key: REDIS_URL
  {{- else if $v.externalRedis.existingSecret }}
name: {{ $v.externalRedis.existingSecret }}
key: {{ $v.externalRedis.existingSecretKey }}
  {{- else if $v.externalRedis.url }}
name: {{ include "bp.componentName" (dict "root" $root "component" "redis-connection") }}
key: REDIS_URL
  {{- else }}
  {{- fail "No Redis: set externalRedis.url or externalRedis.existingSecret (or redis.enabled=true for a try-out)" }}
  {{- end }}
{{- else if eq .what "smtp" }}
  {{- if $v.smtpSink.enabled }}
name: {{ include "bp.connectionsSecret" $root }}
key: SMTP_URL
  {{- else if $v.smtp.existingSecret }}
name: {{ $v.smtp.existingSecret }}
key: {{ $v.smtp.existingSecretKey }}
  {{- else if $v.smtp.url }}
name: {{ include "bp.connectionsSecret" $root }}
key: SMTP_URL
  {{- else }}
  {{- fail "No SMTP server: set smtp.url or smtp.existingSecret (or smtpSink.enabled=true for a try-out)" }}
  {{- end }}
{{- end }}
{{- end }}

{{/* One env var read from a connection Secret: (dict "root" $ "what" "database" "env" "DATABASE_URL"). */}}
{{- define "bp.urlEnv" -}}
{{- $ref := include "bp.urlRef" (dict "root" .root "what" .what) | fromYaml -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}

{{/*
Environment of a platform process: (dict "root" $ "service" "booking-api" "smtp" false "metrics" list "extra" list).
Non-secret settings come from the ConfigMap (envFrom); URLs from Secrets; `metrics` are the
process's metrics settings (EnvVars); `extra` (the user's extraEnv) comes last, so it wins.
*/}}
{{- define "bp.platformEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "bp.componentName" (dict "root" .root "component" "config") }}
env:
  {{- include "bp.urlEnv" (dict "root" .root "what" "database" "env" "DATABASE_URL") | nindent 2 }}
  {{- include "bp.urlEnv" (dict "root" .root "what" "redis" "env" "REDIS_URL") | nindent 2 }}
  {{- if .smtp }}
  {{- include "bp.urlEnv" (dict "root" .root "what" "smtp" "env" "SMTP_URL") | nindent 2 }}
  {{- end }}
  - name: OTEL_SERVICE_NAME
    value: {{ .service | quote }}
  {{- with include "bp.caBundleEnv" .root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
{{- with .root.Values.otel }}
{{- if and .enabled .headersExistingSecret }}
  - name: OTEL_EXPORTER_OTLP_HEADERS
    valueFrom:
      secretKeyRef:
        name: {{ .headersExistingSecret }}
        key: {{ .headersExistingSecretKey }}
{{- end }}
{{- end }}
{{- with .metrics }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- with .extra }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "bp.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/connections: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* The writable scratch dir every service container gets on its read-only root filesystem. */}}
{{- define "bp.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
{{- define "bp.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Where the private CA bundle (caBundle) is mounted, a file name that does not depend
on the key it comes from: libpq reads it through PGSSLROOTCERT, a Redis URL names it
with `?ssl_ca_certs=`.
*/}}
{{- define "bp.caBundleFile" -}}/etc/booking-platform/ca/ca.crt{{- end }}

{{/* The CA bundle's and the extra volumes of a platform pod (after bp.tmpVolume). */}}
{{- define "bp.extraVolumes" -}}
{{- $ca := .Values.caBundle }}
{{- if and $ca.configMap $ca.secret }}
{{- fail "caBundle: set configMap or secret, not both" }}
{{- end }}
{{- if or $ca.configMap $ca.secret }}
- name: ca-bundle
  {{- if $ca.configMap }}
  configMap:
    name: {{ $ca.configMap }}
  {{- else }}
  secret:
    secretName: {{ $ca.secret }}
  {{- end }}
    items:
      - key: {{ $ca.key }}
        path: ca.crt
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Their mounts, in every container of a platform pod (after bp.tmpMount). */}}
{{- define "bp.extraMounts" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: ca-bundle
  mountPath: {{ include "bp.caBundleFile" . | dir }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* PGSSLROOTCERT, when a CA bundle is mounted: libpq verifies Postgres' certificate with it (sslmode=verify-full). */}}
{{- define "bp.caBundleEnv" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: PGSSLROOTCERT
  value: {{ include "bp.caBundleFile" . }}
{{- end }}
{{- end }}

{{/*
The multiprocess metrics dir of gunicorn (API) and Dramatiq (workers): their
processes each write their samples to files there, summed at scrape time. An
emptyDir of its own, on the read-only root filesystem.
*/}}
{{- define "bp.metricsDir" -}}/run/metrics{{- end }}
{{- define "bp.metricsVolume" -}}
- name: metrics
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
{{- define "bp.metricsMount" -}}
- name: metrics
  mountPath: {{ include "bp.metricsDir" . }}
{{- end }}

{{/*
Annotations of a service pod: (dict "root" $ "port" 9100). The config checksums,
then bp.scrapeAnnotations.
*/}}
{{- define "bp.servicePodAnnotations" -}}
{{- include "bp.configChecksums" .root }}
{{- with include "bp.scrapeAnnotations" . }}
{{ . }}
{{- end }}
{{- end }}

{{/*
The `prometheus.io/*` scrape annotations of a pod (when metrics.scrapeAnnotations), then
podAnnotations, which win over them: (dict "root" $ "port" 9100).
*/}}
{{- define "bp.scrapeAnnotations" -}}
{{- $root := .root }}
{{- $ann := dict }}
{{- if $root.Values.metrics.scrapeAnnotations }}
{{- $_ := set $ann "prometheus.io/scrape" "true" }}
{{- $_ := set $ann "prometheus.io/port" (toString .port) }}
{{- $_ := set $ann "prometheus.io/path" "/metrics" }}
{{- end }}
{{- $ann = merge (deepCopy $root.Values.podAnnotations) $ann }}
{{- with $ann }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* The NetworkPolicyPeer of the Prometheus that scrapes the metrics endpoints (no namespaces: the release's own). */}}
{{- define "bp.metricsScraperPeer" -}}
{{- $s := .Values.networkPolicy.metricsScraper -}}
{{- if $s.namespaces -}}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values:
          {{- toYaml $s.namespaces | nindent 10 }}
  {{- with $s.podLabels }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- else -}}
- podSelector:
    matchLabels:
      {{- toYaml $s.podLabels | nindent 6 }}
{{- end }}
{{- end }}

{{/* Components that serve metrics on a port named `metrics` (the events pods serve them on `http`). */}}
{{- define "bp.metricsPortComponents" -}}
{{- $out := list "relay" }}
{{- if include "bp.operatorRuns" . }}
{{- $out = append $out "operator" }}
{{- end }}
{{- range $queue, $_ := .Values.workers }}
{{- $out = append $out (printf "%s-worker" $queue) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- /*
A key the chart generates once and keeps (the progress-page key, the webhooks sealing key).
Unless the user names a Secret of their own, the chart writes one on install and keeps it
across upgrades (and after uninstall), read back with `lookup`. `lookup` answers only from a
cluster (helm install/upgrade, --dry-run=server): `helm template`, --dry-run=client and GitOps
renders see nothing and would make a new key at every render, so the chart refuses to render
there, told by a list of the namespace's ServiceAccounts, which answers (even empty) only from
a cluster. Arguments (a dict): root, component (the Secret's component name), key (the Secret's
key and the variable's name), existing and existingKey (the user's Secret, "" for none),
fresh (the value a first install writes), refusal (the message when it cannot be kept).
*/}}
{{- define "bp.keptSecret" -}}
{{- if not .existing }}
{{- if not (lookup "v1" "ServiceAccount" .root.Release.Namespace "") }}
{{- fail .refusal }}
{{- end }}
{{- $name := include "bp.componentName" (dict "root" .root "component" .component) }}
{{- $kept := dig "data" .key "" (lookup "v1" "Secret" .root.Release.Namespace $name) }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "bp.labels" (dict "root" .root "component" .component) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
stringData:
  {{ .key }}: {{ $kept | b64dec | default .fresh | quote }}
{{- end }}
{{- end }}

{{- /* The env entry that reads a bp.keptSecret key: the user's Secret when named, else the kept one. */}}
{{- define "bp.keptSecretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ .existing | default (include "bp.componentName" (dict "root" .root "component" .component)) }}
      key: {{ ternary .existingKey .key (ne .existing "") }}
{{- end }}
