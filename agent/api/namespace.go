package api

import "strings"

// A guest spec names another container's namespace as "container:<id>"
// (docker's --pid container:<id>): the host's namespace paths mean nothing
// in the guest. The shim uses it for a CRI pod that shares its sandbox's
// PID namespace.
const containerNSPrefix = "container:"

// ContainerNamespace is the namespace path that joins container id's.
func ContainerNamespace(id string) string { return containerNSPrefix + id }

// ParseContainerNamespace returns the container a namespace path names,
// or false when it is not of that form or the id is not valid.
func ParseContainerNamespace(path string) (string, bool) {
	id, ok := strings.CutPrefix(path, containerNSPrefix)
	if !ok || ValidID(id) != nil {
		return "", false
	}
	return id, true
}
