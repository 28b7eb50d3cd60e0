{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "scalekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus the chart name unless the release has it. */}}
{{- define "scalekeeper.fullname" -}}
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

{{/* Name of cluster-scoped objects: two releases of the same name in different namespaces must not collide. */}}
{{- define "scalekeeper.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "scalekeeper.fullname" .) }}
{{- end }}

{{- define "scalekeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scalekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scalekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scalekeeper.labels" -}}
helm.sh/chart: {{ include "scalekeeper.chart" . }}
{{ include "scalekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "scalekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scalekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from an image value {repository, tag, digest}: by digest when set, else by tag, the
chart's appVersion when empty. Called with (list $ .Values.image) or (list $ .Values.celeryExporter.image). */}}
{{- define "scalekeeper.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The Celery exporter's app.kubernetes.io/name. Not the operator's: each one's Deployment selector and
Service would otherwise match the other's pods. */}}
{{- define "scalekeeper.celeryExporter.name" -}}
{{- printf "%s-celery-exporter" (include "scalekeeper.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scalekeeper.celeryExporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scalekeeper.celeryExporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scalekeeper.celeryExporter.labels" -}}
helm.sh/chart: {{ include "scalekeeper.chart" . }}
{{ include "scalekeeper.celeryExporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: celery-exporter
{{- end }}

{{/*
The RBAC rules of the namespaces the operator serves: exactly the calls the operator makes (see the
chart README's RBAC table for which code makes each). Used by the ClusterRole (all namespaces) or by
one Role per watched namespace. The Lease is in a separate Role in the release namespace.
*/}}
{{- define "scalekeeper.rules" -}}
# The policy informer lists and watches the policies; a release refused as stale reads one back; older
# versions' finalizer is removed (Runtime.drop_finalizer).
- apiGroups: ["scalekeeper.dev"]
  resources: ["scalingpolicies"]
  verbs: ["get", "list", "watch", "patch"]
# The operator's status writes (Runtime.cycle write_status, Runtime.hand_over).
- apiGroups: ["scalekeeper.dev"]
  resources: ["scalingpolicies/status"]
  verbs: ["patch"]
# Worker Deployments made from a policy's template (kube/workers.py WorkerDeployments.ensure); the
# informers of Deployments and StatefulSets, whose replicas the cycles read (kube/watched.py).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch"]
# Replica reads and writes through /scale (kube/targets.py ReplicaClient): web, workers, read replicas.
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "patch"]
# The owned HPA of the web Deployment (kube/hpa.py HpaClient: create, replace; kopf's watch of HPAs).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "update"]
# Events on ScalingPolicies (kube/events.py EventRecorder.post).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Busy-worker protection (kube/pods.py): a watch of the worker pods, and the patch of each one's
# controller.kubernetes.io/pod-deletion-cost annotation before a scale-down. The patch can do no more:
# templates/pod-deletion-cost-policy.yaml refuses any other change to a pod by the operator.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
{{- range .Values.extraScaleTargets }}
# extraScaleTargets: replicas through /scale.
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ printf "%s/scale" .resource | quote }}]
  verbs: ["get", "patch"]
{{- end }}
{{- range .Values.extraPatchTargets }}
# extraPatchTargets: replicas through a field (replicasPath).
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: ["get", "patch"]
{{- end }}
{{- end }}
