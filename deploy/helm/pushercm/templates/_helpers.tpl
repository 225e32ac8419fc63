{{/* Name of the chart, or nameOverride. */}}
{{- define "pushercm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified release name. */}}
{{- define "pushercm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "pushercm.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "pushercm.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "pushercm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushercm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pushercm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pushercm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pushercm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pushercm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pushercm.secretName" -}}
{{- default (include "pushercm.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
pushercm.seconds turns a Go duration of the forms 15s, 2m, 1m30s, 500ms or
1h into whole seconds, rounded up; "" is 0. Anything else fails the render.
*/}}
{{- define "pushercm.seconds" -}}
{{- $d := toString . -}}
{{- if eq $d "" -}}0
{{- else if regexMatch "^[0-9]+ms$" $d -}}{{ div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d -}}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- else -}}
{{- fail (printf "%q is not a duration like 15s, 2m, 1m30s or 500ms" $d) -}}
{{- end -}}
{{- end }}

{{/* The pushercm configuration file the ConfigMap holds. */}}
{{- define "pushercm.config" -}}
{{- $base := dict
  "driver" .Values.driver
  "shutdownTimeout" .Values.shutdownTimeout
  "log" (dict "level" .Values.log.level "format" .Values.log.format)
  "grpc" (dict "addr" ":50051")
  "http" (dict "addr" ":6001")
  "ops" (dict "addr" ":9464")
-}}
{{- with .Values.tls.grpc }}{{ if .enabled }}
{{- $t := dict "certFile" "/etc/pushercm/tls/grpc/tls.crt" "keyFile" "/etc/pushercm/tls/grpc/tls.key" }}
{{- if .clientAuth }}{{ $_ := set $t "clientCAFile" "/etc/pushercm/tls/grpc-client-ca/ca.crt" }}{{ end }}
{{- $_ := set $base.grpc "tls" $t }}
{{- end }}{{ end }}
{{- if .Values.tls.http.enabled }}
{{- $_ := set $base.http "tls" (dict "certFile" "/etc/pushercm/tls/http/tls.crt" "keyFile" "/etc/pushercm/tls/http/tls.key") }}
{{- end }}
{{- if .Values.tls.ops.enabled }}
{{- $_ := set $base.ops "tls" (dict "certFile" "/etc/pushercm/tls/ops/tls.crt" "keyFile" "/etc/pushercm/tls/ops/tls.key") }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- with .Values.redis.clusterAddrs }}
{{- $_ := set $base "redis" (dict "clusterAddrs" .) }}
{{- end }}
{{- $c := dict }}
{{- with .Values.cluster.heartbeat }}{{ $_ := set $c "heartbeat" . }}{{ end }}
{{- with .Values.cluster.nodeTtl }}{{ $_ := set $c "nodeTtl" . }}{{ end }}
{{- with .Values.cluster.maxConnections }}{{ $_ := set $c "maxConnections" (int .) }}{{ end }}
{{- with .Values.cluster.redisDown }}{{ $_ := set $c "redisDown" . }}{{ end }}
{{- if $c }}{{ $_ := set $base "cluster" $c }}{{ end }}
{{- end }}
{{- toYaml (mustMergeOverwrite $base (deepCopy .Values.config)) }}
{{- end }}
