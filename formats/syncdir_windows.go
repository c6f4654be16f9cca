package formats

// Windows cannot fsync a directory handle; renames there are durable enough
// for an analysis-side tool that never captures.
func isNotSupported(err error) bool { return err != nil }
