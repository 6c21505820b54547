// Package spi holds the InfraKit service provider interfaces that mobykit's plugins implement
// and its group controller drives: Instance/0.6.1, Flavor/0.1.1 and Group/0.1.1, with the JSON
// types exactly as InfraKit puts them on the wire (Go field names as keys, no omitempty except
// Description.Properties). See docs/infrakit/PROTOCOL.md §3, §6-§8.
//
// The wire protocol (JSON-RPC 2.0 over HTTP on unix sockets) lives in spi/rpc; discovery of
// plugin sockets in spi/discovery. This package has no dependencies beyond the standard library
// so that every side (plugins, controller, CLI, tests) can import it.
package spi
