package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeStream records what RunPlugin sends to the engine.
type fakeStream struct {
	grpc.ServerStream
	ctx    context.Context
	stdout strings.Builder
	stderr strings.Builder
	codes  []int32
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Send(r *pulumirpc.RunPluginResponse) error {
	switch o := r.Output.(type) {
	case *pulumirpc.RunPluginResponse_Stdout:
		s.stdout.Write(o.Stdout)
	case *pulumirpc.RunPluginResponse_Stderr:
		s.stderr.Write(o.Stderr)
	case *pulumirpc.RunPluginResponse_Exitcode:
		s.codes = append(s.codes, o.Exitcode)
	}
	return nil
}

// fakeVenv makes a virtualenv whose python prints its arguments, working directory and one
// environment variable, then exits with PLUGIN_EXIT: enough to see what the host would run.
func fakeVenv(t *testing.T, root string) {
	t.Helper()
	bin := filepath.Join(root, "venv", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"args=$*\"\necho \"pwd=$(pwd)\"\necho \"pack=$PACK_SETTING venv=$VIRTUAL_ENV\"\n" +
		"echo oops >&2\nexit \"${PLUGIN_EXIT:-0}\"\n"
	if err := os.WriteFile(filepath.Join(bin, "python"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func runPlugin(t *testing.T, kind string, args []string, env []string) (*fakeStream, string, string) {
	t.Helper()
	root := t.TempDir()
	fakeVenv(t, root)
	pwd := t.TempDir()
	opts, err := structpb.NewStruct(map[string]any{"toolchain": "pip", "virtualenv": "venv"})
	if err != nil {
		t.Fatal(err)
	}
	req := &pulumirpc.RunPluginRequest{
		Pwd:  pwd,
		Args: args,
		Env:  env,
		Kind: kind,
		Info: &pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: root, EntryPoint: ".", Options: opts},
	}
	stream := &fakeStream{ctx: context.Background()}
	if err := (&host{}).RunPlugin(req, stream); err != nil {
		t.Fatalf("RunPlugin: %v", err)
	}
	return stream, root, pwd
}

func TestRunPluginStartsAPolicyPackThroughPulumiPolicy(t *testing.T) {
	s, root, pwd := runPlugin(t, "analyzer", []string{"127.0.0.1:4242"}, []string{"PACK_SETTING=from-engine", "PATH=/usr/bin:/bin"})
	out := s.stdout.String()
	if want := "args=-u -m pulumi.policy 127.0.0.1:4242 " + root + "\n"; !strings.Contains(out, want) {
		t.Errorf("stdout %q lacks %q", out, want)
	}
	if want := "pwd=" + pwd + "\n"; !strings.Contains(out, want) {
		t.Errorf("the plugin did not run in the engine's working directory: %q", out)
	}
	if want := "pack=from-engine venv=" + filepath.Join(root, "venv"); !strings.Contains(out, want) {
		t.Errorf("the engine's environment or the virtualenv is missing: %q", out)
	}
	if s.stderr.String() != "oops\n" {
		t.Errorf("stderr = %q, want the plugin's stderr", s.stderr.String())
	}
	if len(s.codes) != 1 || s.codes[0] != 0 {
		t.Errorf("exit codes sent = %v, want [0]", s.codes)
	}
}

func TestRunPluginReportsTheExitCode(t *testing.T) {
	s, _, _ := runPlugin(t, "analyzer", []string{"127.0.0.1:1"}, []string{"PLUGIN_EXIT=3", "PATH=/usr/bin:/bin"})
	if len(s.codes) != 1 || s.codes[0] != 3 {
		t.Errorf("exit codes sent = %v, want [3]", s.codes)
	}
}

func TestRunPluginRunsOtherPluginsFromTheirDirectory(t *testing.T) {
	s, root, _ := runPlugin(t, "resource", []string{"127.0.0.1:5", "-v"}, nil)
	if want := "args=-u " + root + " 127.0.0.1:5 -v\n"; !strings.Contains(s.stdout.String(), want) {
		t.Errorf("stdout %q lacks %q", s.stdout.String(), want)
	}
}

func TestPluginArgsRefusesAnAnalyzerWithoutEngineAddress(t *testing.T) {
	_, err := pluginArgs(&pulumirpc.RunPluginRequest{Kind: "analyzer", Info: &pulumirpc.ProgramInfo{ProgramDirectory: "/p"}})
	if err == nil || !strings.Contains(err.Error(), "engine address") {
		t.Errorf("err = %v, want one naming the engine address", err)
	}
}
