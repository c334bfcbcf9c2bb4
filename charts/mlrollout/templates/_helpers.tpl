{{/* Chart name. */}}
{{- define "mlrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (release-based, at most 63 characters). */}}
{{- define "mlrollout.fullname" -}}
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

{{- define "mlrollout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "mlrollout.labels" -}}
helm.sh/chart: {{ include "mlrollout.chart" . }}
{{ include "mlrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mlrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlrollout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlrollout.leaseName" -}}
{{- default (printf "%s-leader" (include "mlrollout.fullname" .)) .Values.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlrollout.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions, derived from the API calls in src/controller/{observe,act,mod}.rs
(tests/rbac.rs applies them to a real API server, runs the operator as the chart's
ServiceAccount, records every request and fails on a 403 or when these rules grant more or
less than it used). The same rules go into the ClusterRole (all namespaces) or into a Role
per watched namespace.
*/}}
{{- define "mlrollout.rules" -}}
# The resource it reconciles: the controller lists and watches ModelDeployments, and reads
# each one by name before deciding (a consistent read, not the watch cache). It never
# creates, updates or deletes one.
- apiGroups: ["mlrollout.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
# Phase, versions, weights, conditions and history are written to the status subresource
# (server-side apply patch, field manager mlrollout).
- apiGroups: ["mlrollout.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Children carry an owner reference to their ModelDeployment with blockOwnerDeletion; clusters
# with the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters)
# require update on the owner's finalizers to set it. No finalizer is ever written.
- apiGroups: ["mlrollout.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# The stable and candidate model servers: watched (owned children, label-selected), read by
# name to see readiness and the served version and that it is this resource's before anything
# is applied over or deleted (never adopted), applied server-side (an apply that creates an
# object is authorized as create), and the candidate's deleted after promotion or rollback.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The stable and candidate Services: watched (owned children), read by name (metadata) to see
# that one of that name is this resource's before it is applied over or deleted, applied
# server-side (create on first apply), and the candidate's deleted after promotion or rollback.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Retraining Jobs: watched (owned children), read by name for their outcome (and, when the
# name is taken, to see whether it is this attempt's), created once per attempt (create, not apply: a Job is never changed), deleted when an attempt is aborted or
# times out.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# The MLflow credentials (spec.model.credentialsSecret) and the Prometheus bearer token
# (spec.rollout.analysis.prometheus.bearerTokenSecret), read by name from the resource's own
# namespace. No list or watch: the operator does not cache Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Traffic split with the Gateway API (spec.traffic.provider gatewayAPI): the HTTPRoute is read
# by name (metadata) to see that one of that name is this resource's, then applied server-side
# (create on first apply); never listed or deleted (it goes with its owner).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch"]
# Traffic split with Istio (spec.traffic.provider istio): the VirtualService likewise, read by
# name, then applied server-side; never listed or deleted.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "create", "patch"]
# InferencePool backends (spec.traffic.backend.kind InferencePool): one pool per variant, read
# by name, then applied server-side; never listed or deleted (they go with their owner).
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["get", "create", "patch"]
# Every decision is reported as an Event on the ModelDeployment; kube's event recorder patches
# an event it published before into a series instead of creating a duplicate.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Names of the Secrets the default notification sinks read, sorted, as a JSON list. */}}
{{- define "mlrollout.notificationSecrets" -}}
{{- $names := list }}
{{- range .Values.notifications.defaultSinks }}
{{- with .webhook }}{{- with .secretRef }}{{- $names = append $names .name }}{{- end }}{{- end }}
{{- with .slack }}{{- $names = append $names .urlSecretRef.name }}{{- end }}
{{- end }}
{{- $names | uniq | sortAlpha | toJson }}
{{- end }}
