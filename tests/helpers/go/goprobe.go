// SPDX-License-Identifier: Apache-2.0
// A static Go program standing in for a Go MCP server (tests/kernel/go_server_test.cpp). Go
// makes its system calls itself, without libc, and with CGO_ENABLED=0 it is one static binary:
// what an LD_PRELOAD guard never sees. Two modes:
//
//	goprobe checks TCP_OK TCP_NO UDP_NO  what a Go server does, one line per check: goroutines
//	                                     on threads, a child process, files in TMPDIR, its own
//	                                     ELF through /proc/self/exe, a TCP connection to each
//	                                     of the first two host:port, a datagram to the third
//	goprobe mcp                          a small MCP stdio server: initialize, tools/list and
//	                                     the tool "dial" {"address": "host:port"}
package main

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

func errName(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.EPERM):
		return "EPERM"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	}
	return err.Error()
}

// dial connects over TCP and returns the body of the HTTP-style answer, or the error's name.
func dial(address string) string {
	c, err := net.Dial("tcp", address)
	if err != nil {
		return errName(err)
	}
	defer c.Close()
	data, err := io.ReadAll(c)
	if err != nil {
		return errName(err)
	}
	if i := strings.Index(string(data), "\r\n\r\n"); i >= 0 {
		return string(data[i+4:])
	}
	return string(data)
}

func checks(allowed, denied, deniedUDP string) {
	status, _ := os.ReadFile("/proc/self/status")
	fmt.Println("seccomp", regexp.MustCompile(`Seccomp:\s+(\d)`).FindStringSubmatch(string(status))[1])

	// Goroutines pinned to threads of their own: clone, futex, signals between threads.
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			mu.Lock()
			sum += i * i
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutines", sum)

	out, err := exec.Command("sh", "-c", "echo $((6 * 7))").Output()
	if err != nil {
		fmt.Println("exec", err)
	} else {
		fmt.Println("exec", strings.TrimSpace(string(out)))
	}

	f := filepath.Join(os.Getenv("TMPDIR"), fmt.Sprintf("go-%d", os.Getpid()))
	if err := os.WriteFile(f, []byte(strings.Repeat("x", 100000)), 0600); err != nil {
		fmt.Println("file", err)
	} else {
		data, _ := os.ReadFile(f)
		os.Remove(f)
		fmt.Println("file", len(data))
	}

	// A static binary has no program interpreter.
	if exe, err := elf.Open("/proc/self/exe"); err != nil {
		fmt.Println("static", err)
	} else {
		interp := false
		for _, p := range exe.Progs {
			interp = interp || p.Type == elf.PT_INTERP
		}
		exe.Close()
		fmt.Println("static", !interp)
	}

	fmt.Println("allowed", dial(allowed))
	fmt.Println("denied", dial(denied))
	if c, err := net.Dial("udp", deniedUDP); err != nil {
		fmt.Println("udp", errName(err))
	} else {
		_, err = c.Write([]byte("x"))
		c.Close()
		fmt.Println("udp", errName(err))
	}
}

type message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method"`
	Params struct {
		Name      string `json:"name"`
		Arguments struct {
			Address string `json:"address"`
		} `json:"arguments"`
	} `json:"params"`
}

func mcp() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var m message
		if json.Unmarshal(in.Bytes(), &m) != nil || m.ID == nil {
			continue // notifications
		}
		var result any
		switch m.Method {
		case "initialize":
			result = map[string]any{
				"protocolVersion": "2025-06-18",
				"capabilities":    map[string]any{"tools": map[string]any{}},
				"serverInfo":      map[string]any{"name": "goprobe", "version": "1"},
			}
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{
				"name":        "dial",
				"description": "Connects over TCP and returns what the peer sent",
				"inputSchema": map[string]any{"type": "object",
					"properties": map[string]any{"address": map[string]any{"type": "string"}}},
			}}}
		case "tools/call":
			text := dial(m.Params.Arguments.Address)
			result = map[string]any{"content": []any{map[string]any{"type": "text", "text": text}},
				"isError": text != "ok"}
		default:
			out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID,
				"error": map[string]any{"code": -32601, "message": "method not found"}})
			continue
		}
		out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}
	fmt.Fprintln(os.Stderr, "goprobe: stdin closed")
}

func main() {
	if len(os.Args) == 5 && os.Args[1] == "checks" {
		checks(os.Args[2], os.Args[3], os.Args[4])
	} else if len(os.Args) == 2 && os.Args[1] == "mcp" {
		mcp()
	} else {
		fmt.Fprintln(os.Stderr, "usage: goprobe checks TCP_OK TCP_NO UDP_NO | goprobe mcp")
		os.Exit(64)
	}
}
