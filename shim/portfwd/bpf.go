package portfwd

import (
	"fmt"
	"net"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Offsets into struct bpf_sk_lookup (include/uapi/linux/bpf.h), the context
// an sk_lookup program receives. The layout is UAPI and therefore stable.
const (
	skLookupFamily   = 8
	skLookupProtocol = 12
	skLookupLocalIP4 = 40
)

const (
	skPass = 1 // SK_PASS: continue with the selected socket, or the regular lookup if none
	// listenerKey is where the listener sits in the socket map.
	listenerKey = uint32(0)
)

// newSockMap returns a SOCKMAP holding ln under listenerKey: the program can
// only hand the kernel a socket it found in such a map.
func newSockMap(ln *net.TCPListener) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "msb_portfwd",
		Type:       ebpf.SockMap,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create socket map: %w", err)
	}
	if err := storeListener(m, ln); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func storeListener(m *ebpf.Map, ln *net.TCPListener) error {
	raw, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("listener raw conn: %w", err)
	}
	var updateErr error
	err = raw.Control(func(fd uintptr) {
		updateErr = m.Update(listenerKey, uint64(fd), ebpf.UpdateAny)
	})
	if err != nil {
		return fmt.Errorf("listener fd: %w", err)
	}
	if updateErr != nil {
		return fmt.Errorf("put listener into socket map: %w", updateErr)
	}
	return nil
}

// newSteerProgram loads an sk_lookup program that hands every IPv4 TCP
// connection to 127.0.0.0/8 to the socket in sock. Other traffic, and lookups
// where the map is empty, fall through to the kernel's normal lookup.
func newSteerProgram(sock *ebpf.Map) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "msb_portfwd",
		Type:         ebpf.SkLookup,
		AttachType:   ebpf.AttachSkLookup,
		License:      "Dual MIT/GPL",
		Instructions: steerInstructions(sock.FD()),
	})
	if err != nil {
		return nil, fmt.Errorf("load sk_lookup program: %w", err)
	}
	return prog, nil
}

// steerInstructions is, in C:
//
//	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP ||
//	    ((__u8 *)&ctx->local_ip4)[0] != 127)
//		return SK_PASS;
//	__u32 key = 0;
//	struct bpf_sock *sk = bpf_map_lookup_elem(&sock, &key);
//	if (!sk)
//		return SK_PASS;
//	bpf_sk_assign(ctx, sk, 0);
//	bpf_sk_release(sk);
//	return SK_PASS;
//
// local_ip4 is in network byte order, so its first byte in memory is the first
// octet on every host; a one-byte load avoids any endianness dependence.
// bpf_sk_assign's result is ignored: if another program already picked a
// socket, that choice stands.
func steerInstructions(mapFD int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // keep ctx across helper calls

		asm.LoadMem(asm.R2, asm.R6, skLookupFamily, asm.Word),
		asm.JNE.Imm(asm.R2, syscall.AF_INET, "pass"),
		asm.LoadMem(asm.R2, asm.R6, skLookupProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, syscall.IPPROTO_TCP, "pass"),
		asm.LoadMem(asm.R2, asm.R6, skLookupLocalIP4, asm.Byte),
		asm.JNE.Imm(asm.R2, 127, "pass"),

		asm.StoreImm(asm.RFP, -4, int64(listenerKey), asm.Word),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),

		asm.Mov.Reg(asm.R7, asm.R0), // the socket reference we must release
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkAssign.Call(),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSkRelease.Call(),

		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}
