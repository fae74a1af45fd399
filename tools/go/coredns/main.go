// Command coredns is CoreDNS with only the plugins cluster DNS needs.
//
// Upstream's main package imports core/plugin, which links every plugin of plugin.cfg (cloud
// DNS providers, etcd, ...). This one links the plugins below and makes them the only
// directives, in upstream's execution order; a Corefile naming any other directive (reload,
// hosts, rewrite, ...) is refused at startup. prometheus comes free: kubernetes and forward link
// it anyway. A Corefile for it (kubeadm's, plus bind, less reload):
//
//	.:53 {
//	    bind 10.0.0.1
//	    errors
//	    health :8080
//	    ready :8181
//	    prometheus :9153
//	    kubernetes cluster.local in-addr.arpa ip6.arpa {
//	        pods insecure
//	        fallthrough in-addr.arpa ip6.arpa
//	    }
//	    forward . /etc/resolv.conf
//	    cache 30
//	    loop
//	    loadbalance
//	}
//
// `coredns -plugins` lists what is linked.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives is the execution order of the linked plugins: the order they have in upstream's
// plugin.cfg (a request passes through them top to bottom).
var directives = []string{
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
	"forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}
