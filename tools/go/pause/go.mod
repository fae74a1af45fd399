// Wrapper module: our own pod-sandbox pause program (main.go, standard library only).
// Built by tools/build.py.
module rayplatform.invalid/tools/pause

go 1.26.6
