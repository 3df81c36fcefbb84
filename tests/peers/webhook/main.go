// webhook: the end-to-end test's admission webhook, served by a pod in the
// tenant cluster (image gantry.test/webhook:1, built by
// scripts/install-test-tools). It refuses any object labelled
// gantry.test/deny=true with its own message, and admits every other.
// The tenant's apiserver reaches it through its Service, which exists only
// on the tenant's nodes: through the konnectivity tunnel.
//
//	webhook -cert FILE -key FILE [-listen :8443]
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID    string `json:"uid"`
	Object struct {
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	} `json:"object"`
}

type response struct {
	UID     string  `json:"uid"`
	Allowed bool    `json:"allowed"`
	Status  *status `json:"status,omitempty"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Message is what a refused object's creator reads.
const Message = "refused by the tenant's own webhook: gantry.test/deny is true"

func main() {
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "its private key (PEM)")
	listen := flag.String("listen", ":8443", "address")
	flag.Parse()
	http.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) {
		var in review
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil || in.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		out := review{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview",
			Response: &response{UID: in.Request.UID, Allowed: true}}
		name := in.Request.Object.Metadata.Name
		if in.Request.Object.Metadata.Labels["gantry.test/deny"] == "true" {
			out.Response.Allowed = false
			out.Response.Status = &status{Code: http.StatusForbidden, Message: Message}
		}
		log.Printf("review %s: %s allowed=%v", in.Request.UID, name, out.Response.Allowed)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	log.Printf("serving on %s", *listen)
	log.Fatal(http.ListenAndServeTLS(*listen, *cert, *key, nil))
}
