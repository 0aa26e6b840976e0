// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

// Addresses of every VM's private network. Each VM has a network of its own (its shim's
// user-space stack), so all guests use the same ones: the guest at GuestIP, the host side
// (gateway, DNS, the source of the host's SSH connections) at GatewayIP.
const (
	Subnet     = "192.168.127.0/24"
	SubnetBits = 24
	GatewayIP  = "192.168.127.1"
	GuestIP    = "192.168.127.2"
	GatewayMAC = "5a:94:ef:e4:0c:ee"
	GuestMAC   = "5a:94:ef:e4:0c:dd"
	// SSHPort is where the guest's SSH server listens.
	SSHPort = 22
)
