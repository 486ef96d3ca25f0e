// Go's side of ctxkit's benchmarks: the scenarios of Go's own context/benchmark_test.go
// (CommonParentCancel, WithTimeout, CancelTree, CheckCanceled, DeepValue) plus the ones ctxkit
// adds (create+drop, fan-out, value misses, bytes per node). Names map onto the Rust groups in
// ../compare.sh.
package gocontext

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func BenchmarkCreateDrop(b *testing.B) {
	b.Run("Root=Background", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, cancel := context.WithCancel(context.Background())
			cancel()
		}
	})
	b.Run("Root=OpenCanceler", func(b *testing.B) {
		parent, pcancel := context.WithCancel(context.Background())
		defer pcancel()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, cancel := context.WithCancel(parent)
			cancel()
		}
	})
}

// As Go's BenchmarkCancelTree/depth=N/Root=OpenCanceler.
func BenchmarkCancelTree(b *testing.B) {
	for _, d := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("depth=%d", d), func(b *testing.B) {
			// The chain's cancel funcs are kept, as the Rust sides keep their handles.
			chain := make([]context.CancelFunc, d)
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				for j := 0; j < d; j++ {
					ctx, chain[j] = context.WithCancel(ctx)
				}
				cancel()
				if ctx.Err() == nil {
					b.Fatal("leaf not cancelled")
				}
			}
		})
	}
}

type tagKey struct{}

// As Go's BenchmarkCommonParentCancel, without its busy loops (the other sides have none).
func BenchmarkCommonParentCancel(b *testing.B) {
	root := context.WithValue(context.Background(), tagKey{}, "value")
	shared, sharedcancel := context.WithCancel(root)
	defer sharedcancel()

	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(shared)
			if ctx.Value(tagKey{}).(string) != "value" {
				b.Fatal("should not be reached")
			}
			cancel()
		}
	})
}

// As Go's BenchmarkWithTimeout/concurrency=40.
func BenchmarkWithTimeout(b *testing.B) {
	root := context.Background()
	var standing []context.CancelFunc
	for i := 0; i < 40; i++ {
		_, c := context.WithTimeout(root, time.Hour)
		standing = append(standing, c)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		wcf := make([]context.CancelFunc, 10)
		for pb.Next() {
			for i := range wcf {
				_, wcf[i] = context.WithTimeout(root, time.Hour)
			}
			for _, f := range wcf {
				f()
			}
		}
	})
	b.StopTimer()
	for _, c := range standing {
		c()
	}
}

// A timeout child made and cancelled by one goroutine: what a request with a deadline costs.
func BenchmarkWithTimeoutCancel(b *testing.B) {
	root := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(root, time.Hour)
		_ = ctx
		cancel()
	}
}

// Err() on a live context with a deadline: on one goroutine, and on GOMAXPROCS goroutines at
// once (run with -cpu 2: ns/op is then the wall time over all the checks).
func BenchmarkErrDeadline(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.Run("threads=1", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if ctx.Err() != nil {
				b.Fatal("done")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ctx.Err() != nil {
					b.Fatal("done")
				}
			}
		})
	})
}

// As Go's BenchmarkCheckCanceled, on a live context.
func BenchmarkCheckLive(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("Err", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if ctx.Err() != nil {
				b.Fatal("done")
			}
		}
	})
	b.Run("Done", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			select {
			case <-ctx.Done():
				b.Fatal("done")
			default:
			}
		}
	})
}

// n goroutines wait on their own child of one root; measured from the root's cancel until the
// last has woken.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				root, cancel := context.WithCancel(context.Background())
				var started sync.WaitGroup
				var woke sync.WaitGroup
				started.Add(n)
				woke.Add(n)
				for j := 0; j < n; j++ {
					child, ccancel := context.WithCancel(root)
					done := child.Done()
					go func() {
						started.Done()
						<-done
						ccancel()
						woke.Done()
					}()
				}
				started.Wait()
				// Let the goroutines park on their channels.
				time.Sleep(time.Millisecond)
				b.StartTimer()
				cancel()
				woke.Wait()
			}
		})
	}
}

type rootKey struct{}
type missKey struct{}

// A chain of depth value nodes: rootKey at the root, a new key per level below (as in Go's
// BenchmarkDeepValue*), the leaf returned.
func valueChain(depth int) context.Context {
	ctx := context.WithValue(context.Background(), rootKey{}, 1)
	for i := 1; i < depth; i++ {
		ctx = context.WithValue(ctx, i, i)
	}
	return ctx
}

func BenchmarkDeepValueHit(b *testing.B) {
	for _, depth := range []int{10, 100, 1000} {
		ctx := valueChain(depth)
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if ctx.Value(rootKey{}) == nil {
					b.Fatal("missing")
				}
			}
		})
	}
}

func BenchmarkDeepValueMiss(b *testing.B) {
	for _, depth := range []int{10, 100, 1000} {
		ctx := valueChain(depth)
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if ctx.Value(missKey{}) != nil {
					b.Fatal("found")
				}
			}
		})
	}
}

type pair struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var sink []pair

// The heap a live node keeps, averaged over many siblings (a parent's children map included),
// and the allocations made per node. Printed as `memory side=go kind=... live_bytes=... allocs=...`.
func TestNodeBytes(t *testing.T) {
	const n = 4096
	measure := func(kind string, make func() pair) {
		keep := makePairs(n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			keep[i] = make()
		}
		runtime.ReadMemStats(&after)
		live := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		allocs := float64(after.Mallocs) - float64(before.Mallocs)
		fmt.Printf("memory side=go kind=%s live_bytes=%.1f allocs=%.2f\n", kind, live/n, allocs/n)
		sink = keep
	}
	bg := context.Background()
	measure("with_cancel/background", func() pair {
		c, f := context.WithCancel(bg)
		return pair{c, f}
	})
	parent, pcancel := context.WithCancel(bg)
	defer pcancel()
	measure("with_cancel/cancel_parent", func() pair {
		c, f := context.WithCancel(parent)
		return pair{c, f}
	})
	measure("with_value", func() pair { return pair{context.WithValue(bg, rootKey{}, uint64(7)), nil} })
	measure("with_timeout/runtime", func() pair {
		c, f := context.WithTimeout(bg, time.Hour)
		return pair{c, f}
	})
	// A node whose Done() channel exists (made lazily by the first Done()).
	measure("with_cancel+done_chan", func() pair {
		c, f := context.WithCancel(parent)
		c.Done()
		return pair{c, f}
	})
}

func makePairs(n int) []pair { return make([]pair, n) }
