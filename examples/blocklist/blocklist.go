package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// list is an immutable set of IPv4 and IPv6 networks. Contains costs one
// map lookup per distinct prefix length in the list, and no allocation.
type list struct {
	nets  map[netip.Prefix]struct{} // masked; IPv4 networks as IPv4
	lens4 []int                     // distinct IPv4 prefix lengths, longest first
	lens6 []int                     // distinct IPv6 prefix lengths, longest first
}

// Contains reports whether ip is in one of the networks. An IPv4-mapped
// IPv6 address is looked up as the IPv4 address it maps.
func (l *list) Contains(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	lens := l.lens6
	if ip.Is4() {
		lens = l.lens4
	}
	for _, n := range lens {
		p, err := ip.Prefix(n)
		if err != nil {
			continue
		}
		if _, ok := l.nets[p]; ok {
			return true
		}
	}
	return false
}

// Len returns the number of distinct networks.
func (l *list) Len() int { return len(l.nets) }

// builder accumulates networks for a list.
type builder struct {
	nets map[netip.Prefix]struct{}
}

// add parses one entry: a network in CIDR notation ("192.0.2.0/24",
// "2001:db8::/32") or a single address ("192.0.2.7", "2001:db8::1"). Host
// bits are ignored, and IPv4-mapped IPv6 networks are taken as IPv4.
func (b *builder) add(entry string) error {
	var p netip.Prefix
	var err error
	if strings.Contains(entry, "/") {
		p, err = netip.ParsePrefix(entry)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(entry); err == nil && a.Zone() != "" {
			err = fmt.Errorf("%q: zones are not allowed", entry)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return err
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return fmt.Errorf("%q: an IPv4-mapped network needs a prefix of at least /96", entry)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if b.nets == nil {
		b.nets = make(map[netip.Prefix]struct{})
	}
	b.nets[p.Masked()] = struct{}{}
	return nil
}

// addText adds every entry of r: one per line or separated by commas or
// spaces, with "#" starting a comment. name names r in errors.
func (b *builder) addText(name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		for _, entry := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if err := b.add(entry); err != nil {
				return fmt.Errorf("%s:%d: %w", name, line, err)
			}
		}
	}
	return sc.Err()
}

// list returns the list of the networks added; the builder is done.
func (b *builder) list() *list {
	l := &list{nets: b.nets}
	for p := range b.nets {
		if p.Addr().Is4() {
			l.lens4 = append(l.lens4, p.Bits())
		} else {
			l.lens6 = append(l.lens6, p.Bits())
		}
	}
	for _, lens := range []*[]int{&l.lens4, &l.lens6} {
		slices.Sort(*lens)
		slices.Reverse(*lens)
		*lens = slices.Compact(*lens)
	}
	return l
}

// parse returns the list of entries in text (see builder.addText).
func parse(text string) (*list, error) {
	var b builder
	if err := b.addText("list", strings.NewReader(text)); err != nil {
		return nil, err
	}
	return b.list(), nil
}
