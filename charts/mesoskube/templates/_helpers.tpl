{{/* Chart name, overridable with nameOverride. */}}
{{- define "mesoskube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: <release>-<name>, or just <release> when it already contains the name. */}}
{{- define "mesoskube.fullname" -}}
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

{{- define "mesoskube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object, without app.kubernetes.io/component. */}}
{{- define "mesoskube.baseLabels" -}}
helm.sh/chart: {{ include "mesoskube.chart" . }}
app.kubernetes.io/name: {{ include "mesoskube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesoskube
{{- end }}

{{/* Labels of the master's objects. */}}
{{- define "mesoskube.labels" -}}
{{ include "mesoskube.baseLabels" . }}
app.kubernetes.io/component: master
{{- end }}

{{/* The master's selector labels (Deployment, Service, ServiceMonitor). */}}
{{- define "mesoskube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesoskube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: master
{{- end }}

{{- define "mesoskube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mesoskube.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mesoskube.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Whether the metrics endpoint is on (operator.metricsPort > 0). */}}
{{- define "mesoskube.metricsOn" -}}
{{- if gt (int .Values.operator.metricsPort) 0 }}true{{ end }}
{{- end }}

{{/* Whether the Mesos HTTP API is on (operator.httpPort > 0). */}}
{{- define "mesoskube.httpOn" -}}
{{- if gt (int .Values.operator.httpPort) 0 }}true{{ end }}
{{- end }}

{{/* Whether kopf's liveness endpoint is on (operator.healthPort > 0). */}}
{{/* Leader election: asked for, or implied by more than one replica (two writers would race). */}}
{{- define "mesoskube.electionOn" -}}
{{- if or .Values.operator.leaderElect (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "mesoskube.healthOn" -}}
{{- if gt (int .Values.operator.healthPort) 0 }}true{{ end }}
{{- end }}

{{/*
One MESOSKUBE_<UPPER_SNAKE> variable per key of .Values.operator (the settings the master reads:
allocationInterval -> MESOSKUBE_ALLOCATION_INTERVAL). null becomes "" (unset, e.g. offerTimeout);
mesosService.tls.secretName sets httpTlsCertFile and httpTlsKeyFile to the mounted Secret's files;
numbers go through toJson so that large integers are not written as 1e+06.
*/}}
{{- define "mesoskube.operatorEnv" -}}
{{- range $key := keys .Values.operator | sortAlpha }}
{{- $value := get $.Values.operator $key }}
{{- if and (eq $key "leaderElect") (include "mesoskube.electionOn" $) }}{{ $value = true }}{{ end }}
{{- if $.Values.mesosService.tls.secretName }}
{{- if eq $key "httpTlsCertFile" }}{{ $value = "/etc/mesoskube/mesos-tls/tls.crt" }}{{ end }}
{{- if eq $key "httpTlsKeyFile" }}{{ $value = "/etc/mesoskube/mesos-tls/tls.key" }}{{ end }}
{{- end }}
- name: {{ printf "MESOSKUBE_%s" ($key | snakecase | upper) }}
  {{- if kindIs "invalid" $value }}
  value: ""
  {{- else if kindIs "string" $value }}
  value: {{ $value | quote }}
  {{- else }}
  value: {{ $value | toJson | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Checks across values that the JSON schema cannot express. */}}
{{- define "mesoskube.validate" -}}
{{- $op := .Values.operator }}
{{- if and (gt (int $op.metricsPort) 0) (eq (int $op.metricsPort) (int $op.healthPort)) }}
{{- fail (printf "operator.metricsPort and operator.healthPort must differ (both are %v)" $op.metricsPort) }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not (and .Values.metrics.service.enabled (include "mesoskube.metricsOn" .))) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled=true and operator.metricsPort > 0" }}
{{- end }}
{{- end }}
