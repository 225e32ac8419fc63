// Package errcode is the product's one error vocabulary: the reason codes of
// DESIGN.md §3 and an Error that carries one.
//
// Domain packages (edge, delivery, authz, lifecycle, the HTTP API) make their
// sentinels with New, or wrap an *Error, so that a transport learns what an
// error means from its Code alone and never imports the package that made it.
// The gRPC error table (interceptors.Map) and the HTTP API each switch on
// Code in one place.
//
// Guarantees:
//   - the package imports nothing from this module, so any package may use it;
//   - Code values are the exact strings sent as google.rpc.ErrorInfo.reason;
//   - Of finds the outermost *Error in a chain (errors.As order), so the
//     sentinel a domain package wrapped first decides the code;
//   - an *Error with Public set is one whose chain may hold internal causes:
//     transports send Public, never Error(), to the client;
//   - details travel the same way: an error that names fields (Fielded), asks
//     for a retry delay (Delayed) or adds ErrorInfo metadata (Described)
//     implements the interface, and transports read it without importing
//     the error's package;
//   - sentinels keep their identity: errors.Is(err, edge.ErrNotFound) still
//     tells edge.ErrNotFound from delivery.ErrNotFound, though both carry
//     NotFound.
package errcode
