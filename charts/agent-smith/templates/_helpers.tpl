{{/* Names, labels and the small pure helpers; the same decisions as src/agent_smith/deploy/render.py. */}}

{{- define "agent-smith.selector" -}}
app.kubernetes.io/name: agent-smith
app.kubernetes.io/instance: {{ .root.Values.crew.name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- with .agent }}
agent-smith.dev/agent: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "agent-smith.labels" -}}
{{ include "agent-smith.selector" . }}
app.kubernetes.io/managed-by: agent-smith
{{- end }}

{{- define "agent-smith.meta" -}}
name: {{ .name | quote }}
namespace: {{ .root.Release.Namespace | quote }}
labels:
  {{- include "agent-smith.labels" . | nindent 2 }}
{{- end }}

{{- define "agent-smith.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "agent-smith.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The pull policy of an image (render.py's pull_policy): a digest or a version tag is kept, anything else pulled. */}}
{{- define "agent-smith.pullPolicy" -}}
{{- $tag := regexReplaceAll "^[^:]*:?" (last (splitList "/" .)) "" }}
{{- if or (contains "@" .) (and $tag (ne $tag "latest")) }}IfNotPresent{{ else }}Always{{ end }}
{{- end }}

{{/* The port of "host:port". */}}
{{- define "agent-smith.port" -}}
{{ regexFind "[0-9]+$" . }}
{{- end }}

{{/* "host port" of a URL, the port defaulted by scheme (.url, .defaults: scheme → port). */}}
{{- define "agent-smith.endpoint" -}}
{{- $u := urlParse .url }}
{{- $hostport := get $u "host" }}
{{- $host := $hostport }}
{{- $port := get .defaults (get $u "scheme") | default 443 }}
{{- if regexMatch ":[0-9]+$" $hostport }}
{{- $host = regexReplaceAll ":[0-9]+$" $hostport "" }}
{{- $port = regexFind "[0-9]+$" $hostport }}
{{- end }}
{{- trimAll "[]" $host | lower }} {{ $port }}
{{- end }}

{{/* The namespace of an in-cluster Service host ("name" or "name.ns.svc[.domain]"), else "".
     localhost and an IPv6 literal are one label too, and no Service: in a pod they are the pod. */}}
{{- define "agent-smith.clusterNamespace" -}}
{{- $labels := splitList "." .host }}
{{- if and (eq (len $labels) 1) (regexMatch "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$" .host) (ne .host "localhost") }}{{ .own }}
{{- else if and (ge (len $labels) 3) (eq (index $labels 2) "svc") }}{{ index $labels 1 }}
{{- end }}
{{- end }}

{{- define "agent-smith.peer" -}}
{{- if .cidr }}
ipBlock:
  cidr: {{ .cidr | quote }}
{{- else }}
{{- with .namespace }}
namespaceSelector:
  matchLabels:
    kubernetes.io/metadata.name: {{ . | quote }}
{{- end }}
podSelector:
  matchLabels: {{ .pod_labels | default dict | toYaml | nindent 4 }}
{{- end }}
{{- end }}

{{- define "agent-smith.namespacePeer" -}}
namespaceSelector:
  matchLabels:
    kubernetes.io/metadata.name: {{ . | quote }}
{{- end }}

{{/* The NetworkPolicy egress rule to the cluster's DNS: kube-dns, or kubernetes.dns_peer (on its port or 53). */}}
{{- define "agent-smith.dnsEgress" -}}
{{- $peer := .Values.kubernetes.dns_peer }}
{{- $port := ($peer | default dict).port | default 53 | int }}
to:
{{- if $peer }}
  - {{- include "agent-smith.peer" $peer | nindent 4 }}
{{- else }}
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    podSelector: {matchLabels: {k8s-app: kube-dns}}
{{- end }}
ports:
  - {protocol: UDP, port: {{ $port }}}
  - {protocol: TCP, port: {{ $port }}}
{{- end }}

{{/* The NetworkPolicy egress rule to NATS: the rendered server, an in-cluster one, or kubernetes.nats_peer. */}}
{{- define "agent-smith.natsEgress" -}}
{{- $v := .Values }}
{{- if not $v.events.nats_url }}
to:
  - podSelector:
      matchLabels:
        {{- include "agent-smith.selector" (dict "root" . "component" "nats") | nindent 8 }}
ports:
  - protocol: TCP
    port: 4222
{{- else }}
{{- $ep := splitList " " (include "agent-smith.endpoint" (dict "url" $v.events.nats_url "defaults" (dict "nats" 4222 "tls" 4222))) }}
{{- $host := index $ep 0 }}
{{- $ns := include "agent-smith.clusterNamespace" (dict "host" $host "own" .Release.Namespace) }}
to:
{{- if $v.kubernetes.nats_peer }}
  - {{- include "agent-smith.peer" $v.kubernetes.nats_peer | nindent 4 }}
{{- else if $ns }}
  - {{- include "agent-smith.namespacePeer" $ns | nindent 4 }}
{{- else }}
{{- fail (printf "events.nats_url: %s is not an in-cluster Service; set kubernetes.nats_peer (its cidr, or namespace and pod_labels)" $host) }}
{{- end }}
ports:
  - protocol: TCP
    port: {{ (and $v.kubernetes.nats_peer $v.kubernetes.nats_peer.port) | default (index $ep 1) | int }}
{{- end }}
{{- end }}

{{- define "agent-smith.natsUrl" -}}
{{- .Values.events.nats_url | default (printf "nats://agent-smith-nats.%s.svc:4222" .Release.Namespace) }}
{{- end }}

{{- define "agent-smith.stateRoot" -}}
/var/lib/agent-smith/{{ .Values.crew.name }}
{{- end }}

{{/* Every crew file path, crew.yaml and binary files included, sorted: the ConfigMap's keys and its volume's items. */}}
{{- define "agent-smith.crewVolume" -}}
name: crew
configMap:
  name: agent-smith-crew
  items:
    {{- range $path := concat (keys .Values.files) (keys .Values.binary_files) (list "crew.yaml") | sortAlpha }}
    - key: {{ replace "/" "__" $path | quote }}
      path: {{ $path | quote }}
    {{- end }}
  defaultMode: 292
{{- end }}

{{- define "agent-smith.checkQuantity" -}}
{{- if not (regexMatch "^([+]?[0-9]+(\\.[0-9]*)?|[+]?\\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$" (toString .value)) }}
{{- fail (printf "%s: %q is not a Kubernetes quantity (like 500m, 2, 1Gi)" .where (toString .value)) }}
{{- end }}
{{- end }}
