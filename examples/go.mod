module github.com/milequest/pushercm/examples

go 1.24.0

require (
	github.com/milequest/pushercm/client v0.1.0
	github.com/milequest/pushercm/gen v0.1.0
	google.golang.org/grpc v1.80.0
)

require (
	golang.org/x/net v0.49.0 // indirect
	golang.org/x/sys v0.40.0 // indirect
	golang.org/x/text v0.33.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260120221211-b8f7ae30c516 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// The examples build against the client and the generated API in this
// repository. A service of your own requires tagged versions instead and
// has no replace (see the README's Go client section).
replace (
	github.com/milequest/pushercm/client => ../client
	github.com/milequest/pushercm/gen => ../gen
)
