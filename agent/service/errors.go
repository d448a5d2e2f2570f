package service

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus turns an error into the ttrpc status the host sees: the
// errdefs kind picks the code, the message is kept whole.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errdefs.IsNotFound(err):
		return codes.NotFound
	case errdefs.IsAlreadyExists(err):
		return codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err):
		return codes.FailedPrecondition
	case errdefs.IsInvalidArgument(err):
		return codes.InvalidArgument
	case errdefs.IsDeadlineExceeded(err):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errdefs.IsNotImplemented(err):
		return codes.Unimplemented
	default:
		return codes.Unknown
	}
}
