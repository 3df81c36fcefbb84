// konnectivity-frontend: the test's stand-in for kube-apiserver's side of the
// tunnel. It dials through gantry's konnectivity server with the very client
// library kube-apiserver compiles in (sigs.k8s.io/apiserver-network-proxy/
// konnectivity-client, at the version Kubernetes 1.37 pins), over the Unix
// socket, as the apiserver's egress selector does. It also serves the far
// end: an echo server on the tenant's side.
//
//	konnectivity-frontend echo   -listen ADDR
//	konnectivity-frontend copy   -uds SOCKET -address ADDR -bytes N
//	konnectivity-frontend dials  -uds SOCKET -address ADDR -count N -parallel P
//	konnectivity-frontend dial   -uds SOCKET -address ADDR
//	konnectivity-frontend hold   -uds SOCKET -address ADDR -count N -seconds S
//
// Without -uds, copy and dials connect directly (the path without the
// tunnel, for the benchmarks' ratios). hold opens N connections at once,
// echoes a line on each, prints "held N", keeps them open S seconds, then
// closes them and prints "ok".
//
// copy sends N bytes of a known pattern, reads them back from the echo
// server, and prints "ok <bytes> <seconds> <sha256>". dials makes N short
// connections (each echoes one line) and prints "ok <count> <seconds>".
// dial makes one connection and prints "ok" or the dial's error.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: konnectivity-frontend echo|copy|dials|dial [flags]"))
	}
	mode := os.Args[1]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	uds := flags.String("uds", "", "the server's Unix socket")
	address := flags.String("address", "", "host:port to dial through the tunnel")
	listen := flags.String("listen", "", "echo: where to listen")
	size := flags.Int64("bytes", 10<<20, "copy: how many bytes")
	count := flags.Int("count", 1000, "dials, hold: how many")
	seconds := flags.Int("seconds", 5, "hold: how long")
	parallel := flags.Int("parallel", 8, "dials: how many at once")
	_ = flags.Parse(os.Args[2:])
	switch mode {
	case "echo":
		echo(*listen)
	case "copy":
		copyThrough(*uds, *address, *size)
	case "dials":
		dials(*uds, *address, *count, *parallel)
	case "hold":
		hold(*uds, *address, *count, *seconds)
	case "dial":
		conn, err := dial(*uds, *address)
		if err != nil {
			fmt.Printf("dial failed: %v\n", err)
			os.Exit(3)
		}
		conn.Close()
		fmt.Println("ok")
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "konnectivity-frontend:", err)
	os.Exit(1)
}

// dial opens one single-use tunnel exactly as kube-apiserver's egress
// selector does for transport uds with proxyProtocol GRPC
// (k8s.io/apiserver/pkg/server/egressselector, udsGRPCConnector): the
// socket's name is also the gRPC target, so it becomes the :authority.
func dial(udsName, address string) (net.Conn, error) {
	if udsName == "" {
		return net.DialTimeout("tcp", address, 30*time.Second)
	}
	dialOption := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", udsName)
	})
	tunnel, err := client.CreateSingleUseGrpcTunnel(context.TODO(), udsName, dialOption,
		grpc.WithBlock(),
		grpc.WithReturnConnectionError(),
		grpc.WithTimeout(30*time.Second),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return tunnel.DialContext(ctx, "tcp", address)
}

func echo(listen string) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		fail(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fail(err)
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

func pattern(i int64) byte { return byte((i*7 + i/251) % 256) }

func copyThrough(uds, address string, size int64) {
	conn, err := dial(uds, address)
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	started := time.Now()
	sent := sha256.New()
	go func() {
		buf := make([]byte, 64<<10)
		for off := int64(0); off < size; {
			n := int64(len(buf))
			if size-off < n {
				n = size - off
			}
			for i := int64(0); i < n; i++ {
				buf[i] = pattern(off + i)
			}
			sent.Write(buf[:n])
			if _, err := conn.Write(buf[:n]); err != nil {
				fail(err)
			}
			off += n
		}
	}()
	got := sha256.New()
	var read int64
	buf := make([]byte, 64<<10)
	for read < size {
		n, err := conn.Read(buf)
		for i := 0; i < n; i++ {
			if buf[i] != pattern(read+int64(i)) {
				fail(fmt.Errorf("byte %d differs", read+int64(i)))
			}
		}
		got.Write(buf[:n])
		read += int64(n)
		if err != nil && read < size {
			fail(fmt.Errorf("after %d bytes: %w", read, err))
		}
	}
	fmt.Printf("ok %d %.3f %s\n", read, time.Since(started).Seconds(), hex.EncodeToString(got.Sum(nil)))
}

func dials(uds, address string, count, parallel int) {
	started := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	work := make(chan int)
	for p := 0; p < parallel; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := oneEcho(uds, address, i); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < count; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		fail(fmt.Errorf("%d of %d dials failed, the first: %w", len(failures), count, failures[0]))
	}
	fmt.Printf("ok %d %.3f\n", count, time.Since(started).Seconds())
}

func hold(uds, address string, count, seconds int) {
	conns := make([]net.Conn, 0, count)
	for i := 0; i < count; i++ {
		conn, err := dial(uds, address)
		if err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
		line := fmt.Sprintf("hold %d\n", i)
		if _, err := conn.Write([]byte(line)); err != nil {
			fail(err)
		}
		if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil || reply != line {
			fail(fmt.Errorf("connection %d: echo %q: %v", i, reply, err))
		}
		conns = append(conns, conn)
	}
	fmt.Printf("held %d\n", len(conns))
	time.Sleep(time.Duration(seconds) * time.Second)
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("ok")
}

func oneEcho(uds, address string, i int) error {
	conn, err := dial(uds, address)
	if err != nil {
		return err
	}
	defer conn.Close()
	line := fmt.Sprintf("dial %d\n", i)
	if _, err := conn.Write([]byte(line)); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if reply != line {
		return fmt.Errorf("echo %q, not %q", reply, line)
	}
	return nil
}
