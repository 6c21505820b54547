// Package image resolves image references for the assembler.
//
// A Cache is a local OCI image layout (default ~/.mobykit/cache, or
// $MOBYKIT_CACHE) whose index.json records, for each reference and
// platform, the image manifest pulled for it. A Resolver answers a
// reference from the cache when the cache holds the image and all its
// blobs (so builds work offline), and otherwise pulls only the requested
// platform from its registry with go-containerregistry's remote package,
// using the docker config credentials (authn.DefaultKeychain). Loopback
// registries and those named as insecure are spoken to over plain HTTP.
// Blobs are written atomically and verified, and a blob already in the
// cache (or being fetched for another image) is never fetched again.
//
// `docker save` and OCI-layout tarballs can be imported into the cache and
// cached images exported as a `docker save` tarball.
//
// The cache also keeps each layer uncompressed (Cache.Unpacked), so the
// layer package can read any file's content at an offset without
// decompressing the layer again.
package image
