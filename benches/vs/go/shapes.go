// The Go side of spindle's side-by-side harness (benches/vs/run): each
// shape written the way a Go programmer writes it, printing one line
//
//	RESULT <shape> <metric> <value> <unit>
//
// per figure, which the harness pairs with the spindle program's line for
// the same shape. Run with GOMAXPROCS set to spindle's worker count.
//
// Usage: shapes <shape> [count]
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func result(shape, metric string, value float64, unit string) {
	fmt.Printf("RESULT %s %s %.6g %s\n", shape, metric, value, unit)
}

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			kib, _ := strconv.ParseFloat(fields[1], 64)
			return kib * 1024
		}
	}
	return 0
}

// A million live goroutines: spawn, all blocked on one channel, released,
// joined (a WaitGroup). GC is off, as the harness's figures say.
func million(n int) {
	debug.SetGCPercent(-1)
	baseline := peakRSS()
	start := time.Now()
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-gate
			done.Done()
		}()
	}
	started.Wait()
	parked := time.Since(start)
	rss := peakRSS()
	close(gate)
	done.Wait()
	total := time.Since(start)
	result("million", "parked", parked.Seconds(), "s")
	result("million", "total", total.Seconds(), "s")
	result("million", "rss_per_live", (rss-baseline)/float64(n), "B")
}

// Spawn and finish n goroutines doing an atomic add, waited for on one
// WaitGroup.
func spawnBatch(n int) {
	var sum int64
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			atomic.AddInt64(&sum, 1)
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if sum != int64(n) {
		panic("lost an add")
	}
	result("spawn_batch", "each", float64(elapsed.Nanoseconds())/float64(n), "ns")
}

// Spawn one goroutine and wait for it, n times.
func spawnJoin(n int) {
	done := make(chan int)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func(i int) { done <- i }(i)
		<-done
	}
	elapsed := time.Since(start)
	result("spawn_join", "each", float64(elapsed.Nanoseconds())/float64(n), "ns")
}

// n round trips between two goroutines over two channels of capacity c.
func pingPong(shape string, n, c int) {
	ping := make(chan int, c)
	pong := make(chan int, c)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	elapsed := time.Since(start)
	close(ping)
	result(shape, "round_trip", float64(elapsed.Nanoseconds())/float64(n), "ns")
}

// One goroutine yielding n times with nothing else to run.
func yield(n int) {
	start := time.Now()
	for i := 0; i < n; i++ {
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	result("yield", "each", float64(elapsed.Nanoseconds())/float64(n), "ns")
}

// n goroutines each sleeping 10 ms; time from the first spawn to the last
// finish.
func sleepers(n int) {
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			time.Sleep(10 * time.Millisecond)
			wg.Done()
		}()
	}
	wg.Wait()
	result("sleepers", "total", time.Since(start).Seconds(), "s")
}

// 1,000 goroutines sharing total increments of one sync.Mutex counter.
func mutex(total int) {
	const goroutines = 1000
	var mu sync.Mutex
	counter := 0
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(goroutines)
	for g := 0; g < goroutines; g++ {
		go func() {
			for i := 0; i < total/goroutines; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if counter != total/goroutines*goroutines {
		panic("lost an increment")
	}
	result("mutex", "total", elapsed.Seconds()*1e3, "ms")
}

// n goroutines each making a raw nanosleep(10 ms) system call (Go's
// syscall path: the P is handed off by sysmon), beside a heartbeat
// goroutine sleeping 1 ms at a time; reports the wall time and the
// heartbeat's largest gap.
func usleep(n int) {
	stop := make(chan struct{})
	gapCh := make(chan time.Duration)
	go func() {
		var largest time.Duration
		last := time.Now()
		for {
			select {
			case <-stop:
				gapCh <- largest
				return
			default:
			}
			time.Sleep(time.Millisecond)
			now := time.Now()
			if gap := now.Sub(last); gap > largest {
				largest = gap
			}
			last = now
		}
	}()
	time.Sleep(20 * time.Millisecond)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			ts := syscall.Timespec{Nsec: 10_000_000}
			syscall.Nanosleep(&ts, nil)
			wg.Done()
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(stop)
	gap := <-gapCh
	result("usleep", "wall", wall.Seconds()*1e3, "ms")
	result("usleep", "heartbeat_gap", gap.Seconds()*1e3, "ms")
}

// net/http serving "Hello, world!" on addr until killed.
func httpServe(addr string) {
	body := []byte("Hello, world!")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	panic(http.Serve(listener, handler))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: shapes million|spawn_batch|spawn_join|rendezvous|buffered|yield|sleepers|mutex|usleep|http [count|addr]")
		os.Exit(2)
	}
	count := func(fallback int) int {
		if len(os.Args) > 2 {
			n, err := strconv.Atoi(strings.ReplaceAll(os.Args[2], "_", ""))
			if err != nil {
				fmt.Fprintln(os.Stderr, "not a number:", os.Args[2])
				os.Exit(2)
			}
			return n
		}
		return fallback
	}
	switch os.Args[1] {
	case "million":
		million(count(1_000_000))
	case "spawn_batch":
		spawnBatch(count(1_000_000))
	case "spawn_join":
		spawnJoin(count(1_000_000))
	case "rendezvous":
		pingPong("rendezvous", count(1_000_000), 0)
	case "buffered":
		pingPong("buffered", count(1_000_000), 1024)
	case "yield":
		yield(count(10_000_000))
	case "sleepers":
		sleepers(count(1_000_000))
	case "mutex":
		mutex(count(1_000_000))
	case "usleep":
		usleep(count(1_000))
	case "http":
		addr := "127.0.0.1:8082"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		httpServe(addr)
	default:
		fmt.Fprintln(os.Stderr, "unknown shape", os.Args[1])
		os.Exit(2)
	}
}
