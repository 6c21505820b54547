package rpc

import "sort"

// The GET /info/api.json document (docs/infrakit/PROTOCOL.md §5). Unlike InfraKit's server, which describes
// only the first registered object, this one describes every interface served on the socket.

type infoSpec struct {
	Name    string
	Version string
	Sub     string
}

type infoMethod struct {
	Request  infoRequest
	Response infoResponse
}

type infoRequest struct {
	Version string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
	Id      string `json:"id"`
}

type infoResponse struct {
	Result any    `json:"result"`
	Id     string `json:"id"`
}

type infoInterface struct {
	Name    string
	Version string
	Sub     string
	Methods []infoMethod
}

type infoDoc struct {
	Vendor     *VendorInfo
	Implements []infoSpec
	Interfaces []infoInterface
}

// infoExampleID is the id of the example envelopes (a string, as InfraKit's).
const infoExampleID = "1795770032"

func (h *Handler) info() infoDoc {
	doc := infoDoc{Implements: []infoSpec{}, Interfaces: []infoInterface{}}
	for _, f := range h.ifaces {
		if doc.Vendor == nil && f.vendor != nil {
			doc.Vendor = f.vendor
		}
		doc.Implements = append(doc.Implements, infoSpec{Name: f.spec.Name, Version: f.spec.Version})
		names := make([]string, 0, len(f.methods))
		for n := range f.methods {
			names = append(names, n)
		}
		sort.Strings(names)
		ii := infoInterface{Name: f.spec.Name, Version: f.spec.Version, Methods: []infoMethod{}}
		for _, n := range names {
			m := f.methods[n]
			req := m.newReq()
			if m.example != nil {
				m.example(req, f.example)
			}
			ii.Methods = append(ii.Methods, infoMethod{
				Request:  infoRequest{Version: "2.0", Method: f.spec.Name + "." + n, Params: req, Id: infoExampleID},
				Response: infoResponse{Result: m.newResp(), Id: infoExampleID},
			})
		}
		doc.Interfaces = append(doc.Interfaces, ii)
	}
	return doc
}
