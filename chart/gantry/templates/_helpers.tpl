{{- define "gantry.name" -}}gantry{{- end -}}

{{- define "gantry.labels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gantry
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gantry.fullname" -}}
{{- if eq .Release.Name "gantry" -}}gantry{{- else -}}{{ printf "%s-gantry" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
