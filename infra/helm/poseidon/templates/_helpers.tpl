{{/* Names, labels and the per-role configuration of the Poseidon Hub chart. */}}

{{- define "poseidon.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "poseidon.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "poseidon.labels" -}}
{{ include "poseidon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: poseidon-hub
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The roles, generated from what `poseidon` knows (roles.yaml, `make docs`). */}}
{{- define "poseidon.roles" -}}
{{- .Files.Get "roles.yaml" | fromYaml | toYaml -}}
{{- end -}}

{{/* A role's configuration: `defaults` overlaid with `roles.<name>`. Call with (dict "root" $ "role" $role). */}}
{{- define "poseidon.roleConfig" -}}
{{- $override := get .root.Values.roles .role.name | default dict -}}
{{- mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $override) | toYaml -}}
{{- end -}}

{{- define "poseidon.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "poseidon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "poseidon.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{/* The non-secret settings of every role (the ConfigMap, and the topics Job, which runs before it exists). */}}
{{- define "poseidon.settings" -}}
POSEIDON_KAFKA_BOOTSTRAP: {{ required "kafka.bootstrap: the Kafka bootstrap servers" .Values.kafka.bootstrap | quote }}
POSEIDON_SCHEMA_REGISTRY_URL: {{ .Values.kafka.schemaRegistryUrl | quote }}
POSEIDON_TOPIC_PREFIX: {{ .Values.topics.prefix | quote }}
POSEIDON_SCHEMA_PREFIX: {{ .Values.schemaPrefix | quote }}
POSEIDON_TOPIC_PARTITIONS: {{ .Values.topics.partitions | quote }}
POSEIDON_TOPIC_REPLICATION: {{ .Values.topics.replication | quote }}
POSEIDON_TOPIC_MIN_ISR: {{ .Values.topics.minInsyncReplicas | quote }}
POSEIDON_GRPC_TLS: {{ .Values.grpc.tls | toString | quote }}
POSEIDON_GRPC_MTLS: {{ .Values.grpc.mtls | toString | quote }}
POSEIDON_HTTP_TLS: {{ .Values.http.tls | toString | quote }}
POSEIDON_GRPC_HOST: "0.0.0.0"
POSEIDON_OPS_HOST: "0.0.0.0"
POSEIDON_INGRESS_HOST: "0.0.0.0"
POSEIDON_GATEWAY_HOST: "0.0.0.0"
POSEIDON_STATE_DIR: /var/lib/poseidon/state
POSEIDON_SECRETS_DIR: /var/run/secrets/poseidon/settings
{{- with .Values.gateway.publicUrl }}
POSEIDON_GATEWAY_PUBLIC_URL: {{ . | quote }}
{{- end }}
{{- with .Values.loginTrustedProxies }}
POSEIDON_LOGIN_TRUSTED_PROXIES: {{ join "," . | quote }}
{{- end }}
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Where each key Secret is mounted, and the setting naming that folder. */}}
{{- define "poseidon.keyFolders" -}}
jwtKeys: POSEIDON_JWT_KEYS_DIR
jwtPublicKeys: POSEIDON_JWT_PUBLIC_KEYS_DIR
identitySealingKeys: POSEIDON_IDENTITY_SEALING_KEYS_DIR
credentialSealingKeys: POSEIDON_CREDENTIAL_SEALING_KEYS_DIR
{{- end -}}


{{/* A role's own environment (beyond the ConfigMap): where its key folders and certificates are. */}}
{{- define "poseidon.roleEnv" -}}
{{- $root := .root -}}{{- $role := .role -}}{{- $fullname := .fullname -}}{{- $folders := .folders -}}
{{- $grpcServer := .grpcServer -}}{{- $httpsServer := .httpsServer -}}{{- $grpcClient := .grpcClient -}}
{{- if $role.grpcClient }}
# gRPC clients reach every hub through the one gRPC Service (a port per hub).
- name: POSEIDON_GRPC_HOST
  value: {{ $fullname }}-grpc
{{- end }}
{{- range $key := $role.keys }}
- name: {{ get $folders $key }}
  value: /var/run/secrets/poseidon/{{ kebabcase $key }}
{{- end }}
{{- if $role.eventKeys }}
- name: POSEIDON_EVENT_KEYS_DIR
  value: /var/run/secrets/poseidon/event-keys
{{- end }}
{{- if or $grpcServer $httpsServer }}
- name: POSEIDON_TLS_CERT
  value: /var/run/secrets/poseidon/tls/tls.crt
- name: POSEIDON_TLS_KEY
  value: /var/run/secrets/poseidon/tls/tls.key
{{- end }}
{{- if $grpcClient }}
- name: POSEIDON_TLS_CA
  value: /var/run/secrets/poseidon/tls-client/ca.crt
{{- if $root.Values.grpc.mtls }}
- name: POSEIDON_TLS_CLIENT_CERT
  value: /var/run/secrets/poseidon/tls-client/tls.crt
- name: POSEIDON_TLS_CLIENT_KEY
  value: /var/run/secrets/poseidon/tls-client/tls.key
{{- end }}
{{- else if or $grpcServer $httpsServer }}
- name: POSEIDON_TLS_CA
  value: /var/run/secrets/poseidon/tls/ca.crt
{{- end }}
{{- if and (eq $role.component "dashboard") $root.Values.dashboard.tlsTerminatedInFront (not $root.Values.http.tls) }}
# Says TLS is terminated in front: the dashboard may then serve plain HTTP on the pod address.
- name: POSEIDON_DEV_MODE
  value: "1"
{{- end }}
{{- end -}}
