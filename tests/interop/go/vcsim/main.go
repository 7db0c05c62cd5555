// vcsim for the interop tests and the simulator benchmark: VMware's vCenter
// simulator from govmomi's simulator package (Debian's
// golang-github-vmware-govmomi-dev), with an inventory chosen by flags.
//
// It prints one JSON line when it serves ({"url", "pid", "hosts", "vms"}),
// and runs until SIGINT/SIGTERM or, with -exit-on-eof,
// until its standard input closes (so that it never outlives the test
// process that started it, even when that process is killed).
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("l", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	certFile := flag.String("cert", "", "serve HTTPS with this certificate (PEM; HTTP without)")
	keyFile := flag.String("key", "", "the certificate's private key (PEM)")
	username := flag.String("username", "user", "the only user name accepted")
	password := flag.String("password", "pass", "its password")
	exitOnEOF := flag.Bool("exit-on-eof", false, "exit when standard input closes")

	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", model.Machine, "VMs per resource pool and standalone host")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "datastores, mounted on every host")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "distributed port groups per datacenter")
	flag.BoolVar(&model.Autostart, "autostart", model.Autostart, "power on the model's VMs")
	flag.Parse()

	if err := model.Create(); err != nil {
		log.Fatalf("creating the model: %v", err)
	}
	defer model.Remove()

	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	if *certFile != "" {
		// Not govmomi's built-in test certificate: its 1024-bit RSA key is
		// refused by OpenSSL's default security level (Python clients).
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatalf("loading the certificate: %v", err)
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	server := model.Service.NewServer()
	defer server.Close()

	count := model.Count()
	banner := map[string]interface{}{"url": server.URL.String(), "pid": os.Getpid(),
		"hosts": count.Host, "vms": count.Machine}
	line, _ := json.Marshal(banner)
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if *exitOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
}
