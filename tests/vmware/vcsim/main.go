// Command vcsim serves a simulated vCenter (VPX) or ESXi (ESX) inventory on loopback for the
// vmware collector's tests and benchmark. It is built from Debian's
// golang-github-vmware-govmomi-dev in GOPATH mode and prints its SDK URL on stdout.
//
// Besides the vSphere API it serves two test hooks, because the simulator (govmomi 0.24) has no
// API call for what they do: POST /resmon/host-state makes a host notResponding or standby, and
// POST /resmon/mount makes one host's mount of a datastore inaccessible (all paths down).
//
// Where the simulator's figures contradict vSphere's documentation, they are corrected: each
// compute resource's summary.effectiveCpu (MHz) and effectiveMemory (MB) are recomputed before
// every SDK request from its running hosts, every host's hardware.numaInfo covers its own CPUs
// and memory, and every datastore lists each host that mounts it in its host property.
//
// The -host-* flags give every host the same hardware figures, CPU features and maintenance
// mode, and -guests names and sizes the virtual machines, so that a test can describe one
// particular machine (the equivalence suite's golden host) to the vmware collector.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	esx := flag.Bool("esx", false, "simulate a standalone ESXi host instead of a vCenter")
	dc := flag.Int("dc", 1, "datacenters (VPX)")
	cluster := flag.Int("cluster", 1, "clusters per datacenter (VPX)")
	host := flag.Int("host", 3, "hosts per cluster (VPX)")
	standalone := flag.Int("standalone-host", 1, "standalone hosts per datacenter (VPX)")
	vm := flag.Int("vm", 2, "virtual machines per resource pool")
	ds := flag.Int("ds", 1, "datastores mounted on every host")
	useTLS := flag.Bool("tls", true, "serve HTTPS with a fresh self-signed certificate")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	username := flag.String("username", "", "the only accepted user name (default: any)")
	password := flag.String("password", "", "the only accepted password (default: any)")
	certOut := flag.String("cert-out", "", "write the server certificate (PEM) to this file")
	var shape hostShape
	flag.StringVar(&shape.uuid, "host-uuid", "", "summary.hardware.uuid of every host")
	flag.StringVar(&shape.cpuModel, "host-cpu-model", "", "summary.hardware.cpuModel")
	flag.IntVar(&shape.packages, "host-cpu-packages", 0, "summary.hardware.numCpuPkgs")
	flag.IntVar(&shape.cores, "host-cpu-cores", 0, "summary.hardware.numCpuCores (all packages)")
	flag.IntVar(&shape.threads, "host-cpu-threads", 0, "summary.hardware.numCpuThreads")
	flag.IntVar(&shape.mhz, "host-cpu-mhz", 0, "summary.hardware.cpuMhz")
	flag.Int64Var(&shape.memoryMB, "host-memory-mb", 0, "summary.hardware.memorySize in MiB")
	flag.StringVar(&shape.cpuid, "host-cpuid", "", "config.featureCapability: comma-separated "+
		"cpuid.* names with value 1, e.g. aes,avx2,intel")
	flag.BoolVar(&shape.maintenance, "host-maintenance", false, "runtime.inMaintenanceMode")
	flag.IntVar(&shape.numaNodes, "host-numa-nodes", 1, "hardware.numaInfo nodes: the host's "+
		"logical CPUs and memory split evenly, node after node")
	guests := flag.String("guests", "", "the VMs, in the order of their names: semicolon-"+
		"separated name,instanceUuid,numCpu,memoryMB,on|off (as many as -vm creates)")
	flag.Parse()

	model := simulator.VPX()
	if *esx {
		model = simulator.ESX()
	} else {
		model.Datacenter = *dc
		model.Cluster = *cluster
		model.ClusterHost = *host
		model.Host = *standalone
		model.Portgroup = 0
	}
	model.Machine = *vm
	model.Datastore = *ds
	defer model.Remove()
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}

	for _, entity := range simulator.Map.All("HostSystem") {
		h := entity.(*simulator.HostSystem)
		simulator.Map.WithLock(h, func() { shape.apply(&h.HostSystem) })
	}
	completeMounts()
	if err := shapeGuests(*guests); err != nil {
		log.Fatalf("-guests: %v", err)
	}

	model.Service.Listen = &url.URL{Host: *listen}
	if *username != "" {
		model.Service.Listen.User = url.UserPassword(*username, *password)
	}
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			log.Fatalf("certificate: %v", err)
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if model.Service.ServeMux == nil {
		model.Service.ServeMux = http.NewServeMux()
	}
	model.Service.ServeMux.HandleFunc("/resmon/host-state", hostState)
	model.Service.ServeMux.HandleFunc("/resmon/mount", mountState)
	server := model.Service.NewServer()
	defer server.Close()
	sdk := server.Config.Handler
	server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/sdk") {
			refreshEffective()
		}
		sdk.ServeHTTP(w, r)
	})

	if *useTLS && *certOut != "" {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw}
		if err := os.WriteFile(*certOut, pem.EncodeToMemory(block), 0o644); err != nil {
			log.Fatalf("write certificate: %v", err)
		}
	}

	u := *server.URL
	u.User = nil
	fmt.Println(u.String())
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}

// hostState sets runtime.connectionState and/or runtime.powerState of the host named by the
// form value "host" (e.g. connection=notResponding, power=standBy).
func hostState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	name := r.FormValue("host")
	for _, entity := range simulator.Map.All("HostSystem") {
		h, ok := entity.(*simulator.HostSystem)
		if !ok || h.Name != name {
			continue
		}
		simulator.Map.WithLock(h, func() { setState(&h.HostSystem, r) })
		fmt.Fprintf(w, "%s\n", h.Reference().Value)
		return
	}
	http.Error(w, "no host named "+name, http.StatusNotFound)
}

func setState(h *mo.HostSystem, r *http.Request) {
	if c := r.FormValue("connection"); c != "" {
		h.Runtime.ConnectionState = types.HostSystemConnectionState(c)
	}
	if p := r.FormValue("power"); p != "" {
		h.Runtime.PowerState = types.HostSystemPowerState(p)
	}
}

// mountState sets DatastoreHostMount.mountInfo.accessible (and inaccessibleReason) of the
// datastore named by the form value "datastore" on the host named "host", as vCenter reports a
// mount whose paths are all down (APD) or lost (PDL): the host still lists the datastore.
func mountState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var host *simulator.HostSystem
	for _, entity := range simulator.Map.All("HostSystem") {
		if h, ok := entity.(*simulator.HostSystem); ok && h.Name == r.FormValue("host") {
			host = h
		}
	}
	if host == nil {
		http.Error(w, "no host named "+r.FormValue("host"), http.StatusNotFound)
		return
	}
	accessible := r.FormValue("accessible") == "true"
	for _, entity := range simulator.Map.All("Datastore") {
		ds, ok := entity.(*simulator.Datastore)
		if !ok || ds.Name != r.FormValue("datastore") {
			continue
		}
		found := false
		simulator.Map.WithLock(ds, func() {
			for i := range ds.Host {
				if ds.Host[i].Key != host.Self {
					continue
				}
				info := ds.Host[i].MountInfo // the simulator's mounts share their flags
				info.Accessible = types.NewBool(accessible)
				info.InaccessibleReason = ""
				if !accessible {
					info.InaccessibleReason = "AllPathsDown_Start"
				}
				ds.Host[i].MountInfo = info
				found = true
			}
		})
		if !found {
			http.Error(w, "the datastore is not mounted on "+host.Name, http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "%s\n", ds.Reference().Value)
		return
	}
	http.Error(w, "no datastore named "+r.FormValue("datastore"), http.StatusNotFound)
}

// completeMounts lists every host that mounts a datastore in the datastore's host property, as
// vCenter does; the simulator lists only the host that created it.
func completeMounts() {
	for _, entity := range simulator.Map.All("HostSystem") {
		h := entity.(*simulator.HostSystem)
		for _, ref := range h.Datastore {
			ds, ok := simulator.Map.Get(ref).(*simulator.Datastore)
			if !ok {
				continue
			}
			simulator.Map.WithLock(ds, func() {
				for _, mount := range ds.Host {
					if mount.Key == h.Self {
						return
					}
				}
				ds.Host = append(ds.Host, types.DatastoreHostMount{
					Key: h.Self,
					MountInfo: types.HostMountInfo{
						AccessMode: string(types.HostMountModeReadWrite),
						Mounted:    types.NewBool(true),
						Accessible: types.NewBool(true),
					},
				})
			})
		}
	}
}

// refreshEffective sets each compute resource's summary.effectiveCpu and effectiveMemory as
// vSphere documents them: the CPU (MHz: cores × MHz) and memory (MB) of its hosts that are
// connected, powered on and not in maintenance mode, left to run virtual machines (the
// simulator's hosts reserve nothing for themselves). The simulator itself adds one core's MHz
// and the memory in bytes per host, once, when the host is added.
func refreshEffective() {
	for _, kind := range []string{"ComputeResource", "ClusterComputeResource"} {
		for _, entity := range simulator.Map.All(kind) {
			var cr *mo.ComputeResource
			switch e := entity.(type) {
			case *mo.ComputeResource:
				cr = e
			case *simulator.ClusterComputeResource:
				cr = &e.ComputeResource
			default:
				continue
			}
			var mhz int32
			var mb int64
			var running int32
			for _, ref := range cr.Host {
				h, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
				if !ok {
					continue
				}
				simulator.Map.WithLock(h, func() {
					rt, hw := h.Runtime, h.Summary.Hardware
					if rt.ConnectionState != types.HostSystemConnectionStateConnected ||
						rt.PowerState != types.HostSystemPowerStatePoweredOn ||
						rt.InMaintenanceMode || hw == nil {
						return
					}
					mhz += int32(hw.NumCpuCores) * hw.CpuMhz
					mb += hw.MemorySize / (1024 * 1024)
					running++
				})
			}
			simulator.Map.WithLock(entity, func() {
				if cr.Summary == nil {
					return
				}
				summary := cr.Summary.GetComputeResourceSummary()
				summary.EffectiveCpu, summary.EffectiveMemory = mhz, mb
				summary.NumEffectiveHosts = running
			})
		}
	}
}

type hostShape struct {
	uuid, cpuModel, cpuid                    string
	packages, cores, threads, mhz, numaNodes int
	memoryMB                                 int64
	maintenance                              bool
}

// apply sets the figures that were given; the others keep the simulator's values.
func (s hostShape) apply(h *mo.HostSystem) {
	hw := h.Summary.Hardware
	if s.uuid != "" {
		hw.Uuid = s.uuid
	}
	if s.cpuModel != "" {
		hw.CpuModel = s.cpuModel
	}
	if s.packages > 0 {
		hw.NumCpuPkgs = int16(s.packages)
	}
	if s.cores > 0 {
		hw.NumCpuCores = int16(s.cores)
	}
	if s.threads > 0 {
		hw.NumCpuThreads = int16(s.threads)
	}
	if s.mhz > 0 {
		hw.CpuMhz = int32(s.mhz)
	}
	if s.memoryMB > 0 {
		hw.MemorySize = s.memoryMB * 1024 * 1024
	}
	if s.cpuid != "" && h.Config != nil {
		config := *h.Config // the simulator's hosts share one config template
		config.FeatureCapability = nil
		for _, name := range strings.Split(s.cpuid, ",") {
			config.FeatureCapability = append(config.FeatureCapability, types.HostFeatureCapability{
				Key: "cpuid." + name, FeatureName: "cpuid." + strings.ToUpper(name), Value: "1",
			})
		}
		h.Config = &config
	}
	h.Runtime.InMaintenanceMode = s.maintenance
	h.Summary.Runtime = &h.Runtime
	if h.Hardware != nil && s.numaNodes > 0 {
		hardware := *h.Hardware // the simulator's hosts share one hardware template
		hardware.NumaInfo = numaInfo(int(hw.NumCpuThreads), hw.MemorySize, s.numaNodes)
		h.Hardware = &hardware
	}
}

// numaInfo splits a host's logical CPUs and memory evenly into nodes, numbered node after
// node, as ESXi reports them. (The simulator's template has one node of 2 CPUs and 1 GiB on a
// 4 GiB host, which no ESXi host reports.)
func numaInfo(threads int, memory int64, nodes int) *types.HostNumaInfo {
	info := &types.HostNumaInfo{Type: "NUMA", NumNodes: int32(nodes)}
	size := memory / int64(nodes)
	for n := 0; n < nodes; n++ {
		node := types.HostNumaNode{
			TypeId:            byte(n),
			MemoryRangeBegin:  int64(n) * size,
			MemoryRangeLength: size,
		}
		for cpu := n * threads / nodes; cpu < (n+1)*threads/nodes; cpu++ {
			node.CpuID = append(node.CpuID, int16(cpu))
		}
		info.NumaNode = append(info.NumaNode, node)
	}
	return info
}

// shapeGuests renames and resizes the VMs, taken in the order of their names.
func shapeGuests(spec string) error {
	if spec == "" {
		return nil
	}
	var vms []*simulator.VirtualMachine
	for _, entity := range simulator.Map.All("VirtualMachine") {
		vms = append(vms, entity.(*simulator.VirtualMachine))
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	specs := strings.Split(spec, ";")
	if len(specs) != len(vms) {
		return fmt.Errorf("%d guests given, the model has %d VMs", len(specs), len(vms))
	}
	for i, item := range specs {
		f := strings.Split(item, ",")
		if len(f) != 5 {
			return fmt.Errorf("%q is not name,instanceUuid,numCpu,memoryMB,on|off", item)
		}
		cpus, err1 := strconv.Atoi(f[2])
		memory, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%q: numCpu and memoryMB must be integers", item)
		}
		power := types.VirtualMachinePowerStatePoweredOn
		if f[4] == "off" {
			power = types.VirtualMachinePowerStatePoweredOff
		}
		vm := vms[i]
		simulator.Map.WithLock(vm, func() {
			vm.Name, vm.Config.Name, vm.Summary.Config.Name = f[0], f[0], f[0]
			vm.Config.InstanceUuid, vm.Summary.Config.InstanceUuid = f[1], f[1]
			vm.Config.Hardware.NumCPU, vm.Summary.Config.NumCpu = int32(cpus), int32(cpus)
			vm.Config.Hardware.MemoryMB = int32(memory)
			vm.Summary.Config.MemorySizeMB = int32(memory)
			vm.Runtime.PowerState, vm.Summary.Runtime.PowerState = power, power
		})
	}
	return nil
}

// selfSigned makes a P-256 certificate for 127.0.0.1, ::1 and localhost that is its own CA, so
// clients can trust it through a CA bundle. (The simulator's built-in certificate is RSA-1024,
// which current OpenSSL refuses as too weak.)
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vcsim"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
