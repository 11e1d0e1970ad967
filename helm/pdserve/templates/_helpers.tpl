{{/* Names ------------------------------------------------------------------------------------------------- */}}

{{- define "pdserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pdserve.fullname" -}}
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

{{/* Name of one component's objects: <fullname>-<component>, at most 63 characters. */}}
{{- define "pdserve.componentName" -}}
{{- printf "%s-%s" (include "pdserve.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pdserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pdserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------------------------ */}}

{{- define "pdserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pdserve.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pdserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pdserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: pdserve
{{- end }}

{{/* Labels of objects that belong to no one component (ConfigMap, ServiceAccount, monitoring). */}}
{{- define "pdserve.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "pdserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pdserve
{{- end }}

{{/* Every pod of this release, whatever its component: who may talk to the internal ports. */}}
{{- define "pdserve.releasePods" -}}
app.kubernetes.io/name: {{ include "pdserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Control plane ----------------------------------------------------------------------------------------- */}}

{{/* Whether the release runs its own Redis or NATS: .svc is "redis" or "nats"; "true" or "". */}}
{{- define "pdserve.builtin" -}}
{{- $v := index .root.Values .svc }}
{{- if and $v.builtin.enabled (not $v.url) (not $v.existingSecret) }}true{{ end }}
{{- end }}

{{/* The URL the chart's own Secret carries for Redis or NATS (not used with existingSecret); a built-in's has
     its password (.password). */}}
{{- define "pdserve.controlPlaneUrl" -}}
{{- $v := index .root.Values .svc }}
{{- if $v.url }}
{{- $v.url }}
{{- else if include "pdserve.builtin" . }}
{{- printf "%s://%s@%s:%d" .svc (ternary (printf ":%s" .password) (printf "pdserve:%s" .password) (eq .svc "redis")) (include "pdserve.componentName" (dict "root" .root "component" .svc)) (ternary 6379 4222 (eq .svc "redis")) }}
{{- else if eq .svc "redis" }}
{{- fail "pdserve needs Redis for its service registry: set redis.url or redis.existingSecret, or redis.builtin.enabled=true for a trial" }}
{{- else }}
{{- fail "pdserve needs NATS for KV and load events: set nats.url or nats.existingSecret, or nats.builtin.enabled=true for a trial" }}
{{- end }}
{{- end }}

{{/*
  The built-ins' passwords, by service: kept from the release's Secret across upgrades (lookup), else new.
  Rendered once per release render (secret.yaml), so the Secret, the URLs and the servers agree.
*/}}
{{- define "pdserve.builtinPasswords" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "pdserve.controlPlaneSecret" .) }}
{{- $data := dict }}
{{- if $existing }}{{ $data = $existing.data | default dict }}{{ end }}
{{- $out := dict }}
{{- range $svc := list "redis" "nats" }}
{{- $old := index $data (printf "%s-password" $svc) }}
{{- if $old }}{{ $_ := set $out $svc (b64dec $old) }}{{ else }}{{ $_ := set $out $svc (randAlphaNum 32) }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Name of the chart's Secret with the control-plane URLs not given by an existingSecret. */}}
{{- define "pdserve.controlPlaneSecret" -}}
{{- printf "%s-control-plane" (include "pdserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
  PDSERVE_REDIS and PDSERVE_NATS (the CLI's --redis and --nats) from a Secret: the user's existingSecret, else
  the chart's own. URLs may carry credentials, so they reach neither a ConfigMap nor the container args.
*/}}
{{- define "pdserve.controlPlaneEnv" -}}
{{- range $svc := list "redis" "nats" }}
{{- $v := index $.Values $svc }}
- name: {{ printf "PDSERVE_%s" (upper $svc) }}
  valueFrom:
    secretKeyRef:
      name: {{ default (include "pdserve.controlPlaneSecret" $) $v.existingSecret }}
      key: {{ ternary $v.existingSecretKey (printf "%s-url" $svc) (ne $v.existingSecret "") }}
{{- end }}
{{- end }}

{{/* Model ------------------------------------------------------------------------------------------------- */}}

{{/* The --model directory inside a pod. */}}
{{- define "pdserve.modelDir" -}}
{{- if eq .Values.model.source "tiny" }}
{{- printf "%s/tiny" (trimSuffix "/" .Values.model.mountPath) }}
{{- else if .Values.model.volume.path }}
{{- printf "%s/%s" (trimSuffix "/" .Values.model.mountPath) (trimPrefix "/" .Values.model.volume.path) }}
{{- else }}
{{- .Values.model.mountPath }}
{{- end }}
{{- end }}

{{- define "pdserve.modelVolume" -}}
- name: models
{{- if eq .Values.model.source "tiny" }}
  emptyDir: {}
{{- else if and .Values.model.volume.claimName (not .Values.model.volume.hostPath) }}
  persistentVolumeClaim:
    claimName: {{ .Values.model.volume.claimName }}
    readOnly: true
{{- else if and .Values.model.volume.hostPath (not .Values.model.volume.claimName) }}
  hostPath:
    path: {{ .Values.model.volume.hostPath }}
    type: Directory
{{- else }}
{{- fail "model.source=volume needs exactly one of model.volume.claimName and model.volume.hostPath" }}
{{- end }}
{{- end }}

{{- define "pdserve.modelMount" -}}
- name: models
  mountPath: {{ .Values.model.mountPath }}
  readOnly: {{ ne .Values.model.source "tiny" }}
{{- end }}

{{/* The initContainer that builds the tiny model into the models emptyDir. */}}
{{- define "pdserve.modelInit" -}}
{{- if eq .Values.model.source "tiny" }}
- name: model-tiny
  image: {{ include "pdserve.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - model
    - tiny
    - --out
    - {{ include "pdserve.modelDir" . }}
    - --seed
    - {{ .Values.model.tiny.seed | quote }}
    - --tokenizer
    - {{ .Values.model.tiny.tokenizer }}
  env:
    - name: HOME
      value: /tmp
  securityContext:
    {{- include "pdserve.containerSecurityContext" . | nindent 4 }}
  resources:
    requests: { cpu: 500m, memory: 512Mi }
    limits: { memory: 2Gi }
  volumeMounts:
    - name: models
      mountPath: {{ .Values.model.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}

{{/* Pods -------------------------------------------------------------------------------------------------- */}}

{{- define "pdserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pdserve.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "pdserve.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Resource requests and limits with the pool's accelerator added (equal request and limit, as device plugins require). */}}
{{- define "pdserve.resources" -}}
{{- $pool := .pool }}
{{- $res := deepCopy (default dict $pool.resources) }}
{{- if ne $pool.accelerator "none" }}
{{- $acc := index .root.Values.accelerators $pool.accelerator }}
{{- $limits := default dict $res.limits }}
{{- $requests := default dict $res.requests }}
{{- $_ := set $limits $acc.resource ($pool.acceleratorCount | int) }}
{{- $_ := set $requests $acc.resource ($pool.acceleratorCount | int) }}
{{- $_ := set $res "limits" $limits }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Scheduling: the accelerator's nodeSelector and tolerations, then the pool's own. */}}
{{- define "pdserve.scheduling" -}}
{{- $pool := .pool }}
{{- $nodeSelector := dict }}
{{- $tolerations := list }}
{{- if ne $pool.accelerator "none" }}
{{- $acc := index .root.Values.accelerators $pool.accelerator }}
{{- $nodeSelector = merge $nodeSelector (default dict $acc.nodeSelector) }}
{{- $tolerations = concat $tolerations (default list $acc.tolerations) }}
{{- end }}
{{- $nodeSelector = merge (deepCopy (default dict $pool.nodeSelector)) $nodeSelector }}
{{- $tolerations = concat $tolerations (default list $pool.tolerations) }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $pool.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* --execution-provider: the pool's setting, else its accelerator's, else cpu. */}}
{{- define "pdserve.executionProvider" -}}
{{- if .pool.executionProvider }}
{{- .pool.executionProvider }}
{{- else if ne .pool.accelerator "none" }}
{{- (index .root.Values.accelerators .pool.accelerator).executionProvider }}
{{- else }}
{{- "cpu" }}
{{- end }}
{{- end }}

{{- define "pdserve.probes" -}}
{{- $p := .root.Values.probes }}
startupProbe:
  httpGet: { path: /health, port: admin }
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
livenessProbe:
  httpGet: { path: /health, port: admin }
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet: { path: /ready, port: admin }
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end }}

{{/* Environment every pdserve container gets: the shared flags and the pod's own identity. */}}
{{- define "pdserve.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "pdserve.fullname" .root }}
env:
  - name: HOME
    value: /tmp
  {{- include "pdserve.controlPlaneEnv" .root | trim | nindent 2 }}
  - name: POD_NAME
    valueFrom: { fieldRef: { fieldPath: metadata.name } }
  - name: POD_NAMESPACE
    valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
  - name: POD_IP
    valueFrom: { fieldRef: { fieldPath: status.podIP } }
  {{- with .pool.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Flags every service takes, read from the shared ConfigMap through the environment; --redis and --nats
     come as PDSERVE_REDIS and PDSERVE_NATS from a Secret (pdserve.controlPlaneEnv). */}}
{{- define "pdserve.commonArgs" -}}
- --host=0.0.0.0
- --admin-port={{ .pool.adminPort }}
- --cluster=$(PDSERVE_CLUSTER)
- --log-level=$(PDSERVE_LOG_LEVEL)
- --log-format=$(PDSERVE_LOG_FORMAT)
{{- if include "pdserve.tlsSource" .root }}
- --tls=on
- --tls-dir=/etc/pdserve/tls
{{- else }}
- --tls=off
{{- end }}
{{- end }}

{{/* TLS inside the cluster ----------------------------------------------------------------------------------- */}}

{{/* Where the pods' certificates come from: "secret" (tls.existingSecret), "certManager", or "" (plaintext). */}}
{{- define "pdserve.tlsSource" -}}
{{- $t := .Values.tls }}
{{- if eq $t.mode "off" }}
{{- else if $t.existingSecret }}secret
{{- else if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}certManager
{{- else if eq $t.mode "on" }}
{{- fail "tls.mode=on needs tls.existingSecret, or cert-manager installed in the cluster (cert-manager.io/v1) to issue the certificates" }}
{{- end }}
{{- end }}

{{/* The Secret mounted at /etc/pdserve/tls: ca.crt, tls.crt, tls.key. */}}
{{- define "pdserve.tlsSecret" -}}
{{- default (printf "%s-tls" (include "pdserve.fullname" .) | trunc 63 | trimSuffix "-") .Values.tls.existingSecret }}
{{- end }}

{{- define "pdserve.tlsMount" -}}
{{- if include "pdserve.tlsSource" . }}
- { name: tls, mountPath: /etc/pdserve/tls, readOnly: true }
{{- end }}
{{- end }}

{{- define "pdserve.tlsVolume" -}}
{{- if include "pdserve.tlsSource" . }}
- name: tls
  secret:
    secretName: {{ include "pdserve.tlsSecret" . }}
    items:
      - { key: ca.crt, path: ca.crt }
      - { key: tls.crt, path: tls.crt }
      - { key: tls.key, path: tls.key }
    defaultMode: 288  # 0440: the owner and the pod's fsGroup may read
{{- end }}
{{- end }}

{{/* Flags of the model-serving services (gateway and engines). */}}
{{- define "pdserve.modelArgs" -}}
- --model=$(PDSERVE_MODEL_DIR)
- --block-size=$(PDSERVE_BLOCK_SIZE)
{{- if .Values.model.servedModelName }}
- --served-model-name=$(PDSERVE_SERVED_MODEL_NAME)
{{- end }}
{{- end }}

{{/* Pod annotations: the shared ConfigMap's and Secret's checksums, so a changed flag or URL rolls the pods. */}}
{{- define "pdserve.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/control-plane: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .pool.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pdserve.podLabels" -}}
{{ include "pdserve.selectorLabels" . }}
app.kubernetes.io/part-of: pdserve
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pdserve.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A flag value as the CLI reads it: whole numbers without an exponent (YAML numbers arrive as float64). */}}
{{- define "pdserve.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Where pdserve pods may connect: this release's pods (peers, built-in Redis and NATS), cluster DNS, and
     networkPolicy.egressTo. */}}
{{- define "pdserve.egressRules" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "pdserve.releasePods" . | trim | nindent 10 }}
- to:
    - namespaceSelector: {}
  ports:
    - { port: 53, protocol: UDP }
    - { port: 53, protocol: TCP }
{{- if not (and (include "pdserve.builtin" (dict "root" . "svc" "redis")) (include "pdserve.builtin" (dict "root" . "svc" "nats"))) }}
# An external Redis or NATS: its port, wherever it is (narrow it with egressTo and controlPlanePorts: []).
{{- with .Values.networkPolicy.controlPlanePorts }}
- ports:
    {{- range . }}
    - { port: {{ . }}, protocol: TCP }
    {{- end }}
{{- end }}
{{- end }}
{{- with .Values.networkPolicy.egressTo }}
{{ toYaml . }}
{{- end }}
{{- end }}
