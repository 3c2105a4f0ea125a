package devstack

import (
	"fmt"
	"os"
	"strings"
)

// Environment variables that carry the endpoints of a running stack, so that tests and
// child processes can attach to it instead of starting their own.
const (
	EnvKinesisEndpoint  = "DEVSTACK_KINESIS_ENDPOINT"
	EnvDynamoDBEndpoint = "DEVSTACK_DYNAMODB_ENDPOINT"
	EnvS3Endpoint       = "DEVSTACK_S3_ENDPOINT"
)

// Credentials and region of every client built by this package. s3rver accepts only
// the access key S3RVER with secret S3RVER; kinesalite and dynalite accept anything,
// so one pair serves all three.
const (
	AccessKeyID     = "S3RVER"
	SecretAccessKey = "S3RVER"
	DefaultRegion   = "us-east-1"
)

// Endpoints holds the base URLs (http://127.0.0.1:PORT) of the three emulators.
type Endpoints struct {
	Kinesis  string
	DynamoDB string
	S3       string
}

// Env returns the DEVSTACK_*_ENDPOINT=value lines that EndpointsFromEnv and ForTest
// read back.
func (e Endpoints) Env() []string {
	return []string{
		EnvKinesisEndpoint + "=" + e.Kinesis,
		EnvDynamoDBEndpoint + "=" + e.DynamoDB,
		EnvS3Endpoint + "=" + e.S3,
	}
}

// ChildEnv returns Env plus the variables that make an AWS SDK in a child process
// (config.LoadDefaultConfig) use the emulators: the per-service endpoint URLs, the
// S3RVER credentials, the region, and no IMDS. The shared config files point at
// /dev/null so a developer's ~/.aws profile cannot redirect the child to real AWS,
// and AWS_SESSION_TOKEN is blanked so an inherited token is not sent along.
// Children must still set UsePathStyle on their S3 client; the SDK has no variable for
// it.
func (e Endpoints) ChildEnv() []string {
	return append(e.Env(),
		"AWS_ENDPOINT_URL_KINESIS="+e.Kinesis,
		"AWS_ENDPOINT_URL_DYNAMODB="+e.DynamoDB,
		"AWS_ENDPOINT_URL_S3="+e.S3,
		"AWS_ACCESS_KEY_ID="+AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION="+DefaultRegion,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE="+os.DevNull,
	)
}

// EndpointsFromEnv reads the DEVSTACK_*_ENDPOINT variables. ok is false when none is
// set; err is non-nil when only some are, which usually means a broken `make test`.
func EndpointsFromEnv() (e Endpoints, ok bool, err error) {
	e = Endpoints{
		Kinesis:  os.Getenv(EnvKinesisEndpoint),
		DynamoDB: os.Getenv(EnvDynamoDBEndpoint),
		S3:       os.Getenv(EnvS3Endpoint),
	}
	var missing []string
	for _, v := range []struct{ name, val string }{
		{EnvKinesisEndpoint, e.Kinesis},
		{EnvDynamoDBEndpoint, e.DynamoDB},
		{EnvS3Endpoint, e.S3},
	} {
		if v.val == "" {
			missing = append(missing, v.name)
		}
	}
	switch len(missing) {
	case 0:
		return e, true, nil
	case 3:
		return Endpoints{}, false, nil
	default:
		return Endpoints{}, false, fmt.Errorf("devstack: read endpoints from env: %s not set (set all three or none)", strings.Join(missing, ", "))
	}
}
