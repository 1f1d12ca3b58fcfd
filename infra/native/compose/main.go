// Command compose-config loads a compose file the way `docker compose config` does (compose-go:
// interpolation, `${VAR:?message}` checks, schema validation, normalisation) with variables taken
// from one env file only (never the caller's environment), and prints JSON:
//
//	{"project": <the normalised project>, "variables": {NAME: {"required": bool, "default": "..."}}}
//
// Exit status 1 with compose-go's own message on stderr when the file does not load.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/template"
	"go.yaml.in/yaml/v3"
)

type variable struct {
	Required bool   `json:"required"`
	Default  string `json:"default,omitempty"`
	HasDflt  bool   `json:"has_default"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	file := flag.String("f", "docker-compose.yml", "compose file")
	envFile := flag.String("env-file", "", "the only source of variables")
	name := flag.String("p", "evcharging", "project name")
	flag.Parse()

	abs, err := filepath.Abs(*file)
	if err != nil {
		fail(err)
	}
	opts := []cli.ProjectOptionsFn{cli.WithName(*name), cli.WithWorkingDirectory(filepath.Dir(abs))}
	if *envFile != "" {
		opts = append(opts, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	}
	options, err := cli.NewProjectOptions([]string{abs}, opts...)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}

	raw, err := os.ReadFile(abs)
	if err != nil {
		fail(err)
	}
	var dict map[string]interface{}
	if err := yaml.Unmarshal(raw, &dict); err != nil {
		fail(err)
	}
	vars := map[string]variable{}
	for n, v := range template.ExtractVariables(dict, template.DefaultPattern) {
		vars[n] = variable{Required: v.Required, Default: v.DefaultValue, HasDflt: v.DefaultValue != ""}
	}

	projectJSON, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	out, err := json.MarshalIndent(map[string]interface{}{"project": json.RawMessage(projectJSON), "variables": vars}, "", "  ")
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}
