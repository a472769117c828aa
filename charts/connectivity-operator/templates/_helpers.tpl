{{/* Chart name, overridable. */}}
{{- define "connectivity-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus the chart name unless it is in it. */}}
{{- define "connectivity-operator.fullname" -}}
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

{{- define "connectivity-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "connectivity-operator.commonLabels" -}}
helm.sh/chart: {{ include "connectivity-operator.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: connectivity-operator
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "connectivity-operator.labels" -}}
{{ include "connectivity-operator.commonLabels" . }}
{{ include "connectivity-operator.selectorLabels" . }}
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "connectivity-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "connectivity-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "connectivity-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "connectivity-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "connectivity-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: forced, or more than one replica. */}}
{{- define "connectivity-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{- define "connectivity-operator.leaseName" -}}
{{- default (include "connectivity-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The API calls the operator makes, and nothing more: its own kinds (watch, finalizer patches),
their status (server-side apply), the credential Secrets (read on every reconcile; never listed or
watched) and events. Leases are separate (templates/rbac.yaml, release namespace only).
*/}}
{{- define "connectivity-operator.rules" -}}
- apiGroups: ["connectivity-operator.dev"]
  resources: ["providerconfigs", "serviceprofiles", "connectivitysubscriptions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["connectivity-operator.dev"]
  resources: ["providerconfigs/status", "serviceprofiles/status", "connectivitysubscriptions/status"]
  verbs: ["patch"]
# Secrets: read credentials; patch only to add and remove the finalizer
# connectivity-operator.dev/credentials-in-use on the Secrets ProviderConfigs reference.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Name, labels and selector labels of one demo simulator; call with (list $ "emnify"). */}}
{{- define "connectivity-operator.simName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-sim-%s" $root.Release.Name (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "connectivity-operator.simSelectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "connectivity-operator.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: simulator-{{ index . 1 }}
{{- end }}

{{/* The enabled demo simulators as "vendor-flag=port" pairs, e.g. bics-sft=8083. */}}
{{- define "connectivity-operator.simulators" -}}
{{- $sims := list }}
{{- if .Values.simulators.enabled }}
{{- if .Values.simulators.emnify.enabled }}{{ $sims = append $sims (printf "emnify=%d" (int .Values.simulators.emnify.port)) }}{{ end }}
{{- if .Values.simulators.telenor.enabled }}{{ $sims = append $sims (printf "telenor=%d" (int .Values.simulators.telenor.port)) }}{{ end }}
{{- if .Values.simulators.bicsSft.enabled }}{{ $sims = append $sims (printf "bics-sft=%d" (int .Values.simulators.bicsSft.port)) }}{{ end }}
{{- end }}
{{- join "," $sims }}
{{- end }}
