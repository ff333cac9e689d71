{{/* The release's full name: the release name, unless it already contains the chart's. */}}
{{- define "kglue.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kglue.labels" -}}
app.kubernetes.io/name: kglue-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kglue
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kglue.selectorLabels" -}}
app.kubernetes.io/name: kglue-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kglue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kglue.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: call with (dict "image" .Values.image.X "appVersion" .Chart.AppVersion). */}}
{{- define "kglue.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}
{{- end -}}
