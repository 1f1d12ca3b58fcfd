// A wrapper module around compose-go, the Compose Specification's reference loader (the library
// `docker compose` itself uses), so the deployment can be validated without a Docker engine or the
// compose plugin. Built and cached by evcharging/stack/builds.py:compose_config_binary.
module evcharging.local/composeconfig

go 1.24

require (
	github.com/compose-spec/compose-go/v2 v2.9.0
	go.yaml.in/yaml/v3 v3.0.4
)
