// Command pause is the first process of a pod sandbox: it holds the pod's namespaces open.
//
// As PID 1 of a pod that shares its process namespace it also reaps the zombies reparented to
// it (on SIGCHLD). SIGINT and SIGTERM end it with status 0; otherwise it sleeps forever.
// `pause -v` prints its version. The same job as Kubernetes' build/pause/linux/pause.c, in Go
// so that it is built like every other binary here (static: CGO_ENABLED=0).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by tools/build.py (-ldflags -X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	for _, a := range args {
		switch a {
		case "-v", "--version":
			fmt.Printf("pause (ray-platform) %s\n", version)
			return 0
		case "-h", "--help":
			fmt.Println("usage: pause [-v]")
			return 0
		default:
			fmt.Fprintf(os.Stderr, "pause: unknown argument %q\nusage: pause [-v]\n", a)
			return 2
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}

	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGCHLD, syscall.SIGINT, syscall.SIGTERM)
	reap() // zombies that were already there before we listened
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
		return 0
	}
	return 0
}

// reap collects every exited child without blocking. Signals coalesce (many children may exit
// behind one SIGCHLD), so it loops until none is left.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
