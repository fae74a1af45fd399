package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles this package into a temporary directory (the tests run the real binary: PID 1,
// signals and exit status are process matters).
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pause")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=vtest", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(build(t), "-v").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pause (ray-platform) vtest" {
		t.Fatalf("pause -v: %v %q", err, out)
	}
}

func TestUnknownArgumentIsRefused(t *testing.T) {
	err := exec.Command(build(t), "-x").Run()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 2 {
		t.Fatalf("pause -x: want exit 2, got %v", err)
	}
}

func TestSignalsEndItWithStatusZero(t *testing.T) {
	bin := build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let it install its handlers
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if err := waitTimeout(cmd, 5*time.Second); err != nil {
			t.Fatalf("after %v: %v", sig, err)
		}
	}
}

// TestReapsOrphansAsPID1 runs pause as PID 1 of a new PID namespace, enters the namespace with
// nsenter and leaves an orphan there: the orphan is reparented to pause, which must reap it.
func TestReapsOrphansAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter")
	}
	cmd := exec.Command(build(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start in a new PID namespace: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	pid := strconv.Itoa(cmd.Process.Pid)
	// sh starts three short sleeps and exits at once: they become pause's children. (Their
	// output goes to /dev/null, or CombinedOutput would wait for them to end.)
	out, err := exec.Command(nsenter, "-t", pid, "-p", "--", "sh", "-c",
		"for i in 1 2 3; do sleep 0.5 >/dev/null 2>&1 & done; exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	sawChildren := false
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := childrenOf(cmd.Process.Pid)
		if n > 0 {
			sawChildren = true
		}
		if n == 0 && sawChildren {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause still has %d children (zombies?) after 5s; saw children: %v", n, sawChildren)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(stderr.String(), "should be the first process") {
		t.Fatalf("pause did not see itself as PID 1: %s", stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := waitTimeout(cmd, 5*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
}

// childrenOf counts the processes (zombies included) whose parent is pid.
func childrenOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "PPid:") && strings.TrimSpace(line[5:]) == strconv.Itoa(pid) {
				n++
			}
		}
	}
	return n
}

func waitTimeout(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err // nil: exit status 0
	case <-time.After(d):
		_ = cmd.Process.Kill()
		return <-done
	}
}
