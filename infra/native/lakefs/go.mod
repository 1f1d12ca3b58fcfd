// A wrapper module so lakeFS builds with `go build`: lakeFS's own go.mod has a `replace` line,
// which `go install module@version` refuses. Its go.sum is copied in at build time (see
// evcharging/stack/builds.py) because checksum-database look-ups fail for two of its dependencies.
module evcharging.local/lakefs

go 1.25

require github.com/treeverse/lakefs v1.86.0

replace github.com/csimplestring/delta-go => github.com/treeverse/delta-go v0.0.0-20260323095047-d2f80252d945
