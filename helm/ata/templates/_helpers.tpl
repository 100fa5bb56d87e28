{{/* Chart name, truncated for label values. */}}
{{- define "ata.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped prefix of every object name. */}}
{{- define "ata.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ata
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "service" $name). */}}
{{- define "ata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ata.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{/* The image of one service (or "runtime"); call with (dict "root" $ "service" $name). */}}
{{- define "ata.image" -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .service (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* The Secret every service loads, or "" when there is none. */}}
{{- define "ata.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.values -}}
{{- printf "%s-secrets" (include "ata.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuse an install that cannot reach the journal or Redis (values.schema.json checks the rest). */}}
{{- define "ata.validate" -}}
{{- $secret := include "ata.secretName" . -}}
{{- if and (not .Values.postgresql.url) (not $secret) -}}
{{- fail "postgresql.url is required (or secrets.existingSecret with the key ATA_JOURNAL_URL): the journal needs PostgreSQL" -}}
{{- end -}}
{{- if and (not .Values.redis.url) (not $secret) -}}
{{- fail "redis.url is required (or secrets.existingSecret with the key ATA_REDIS_URL)" -}}
{{- end -}}
{{- end -}}
