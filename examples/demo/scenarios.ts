import { createHmac } from 'node:crypto'

/**
 * One thing the demo can show: a URL on the API, what it answers, and why. The page draws
 * one tile per scenario; the tests request every one and check the documented answer.
 */
export interface Scenario {
  readonly id: string
  readonly title: string
  /** Path and query on the API, e.g. `/image/sample.jpg?width=320`. */
  readonly path: string
  readonly status: number
  /** The `x-ic-error-code` sent, for errors. */
  readonly code?: string
  /** A validation message `x-ic-error-validation` must contain. */
  readonly validation?: string
  readonly kind: 'image' | 'chart'
  /** `load`: fetched when the page opens; `button`: fetched on a click (it costs quota or time). */
  readonly trigger: 'load' | 'button'
  readonly note: string
}

/** Signs an Image-Charts query the way the official clients do: HMAC-SHA256 over the encoded query, `ichm` appended. */
export function signChartQuery(query: string, account: string, secret: string): string {
  const signed = `${query}&icac=${encodeURIComponent(account)}`
  return `${signed}&ichm=${createHmac('sha256', secret).update(signed).digest('hex')}`
}

/**
 * Everything the demo can produce, in page order.
 *
 * @example
 * for (const s of demoScenarios({ account: 'demo', secret: 'demo-secret' })) console.log(s.status, s.path)
 */
export function demoScenarios(auth: {
  readonly account: string
  readonly secret: string
}): readonly Scenario[] {
  const sign = (query: string): string => `/chart?${signChartQuery(query, auth.account, auth.secret)}`
  return [
    {
      id: 'image-jpeg',
      title: 'Resized JPEG',
      path: '/image/sample.jpg?width=320',
      status: 200,
      kind: 'image',
      trigger: 'load',
      note: 'sample.jpg from the demo backend, 320 px wide.',
    },
    {
      id: 'image-webp',
      title: 'Cropped to a square, as WebP',
      path: '/image/sample.png?width=200&height=200&crop=fit&format=webp',
      status: 200,
      kind: 'image',
      trigger: 'load',
      note: 'crop=fit fills the box and crops the rest.',
    },
    {
      id: 'image-redirect',
      title: 'Through a redirect, dpr=2',
      path: '/image/redirect/sample.jpg?width=120&dpr=2',
      status: 200,
      kind: 'image',
      trigger: 'load',
      note: 'The backend redirects to the image; the hop is checked again.',
    },
    {
      id: 'chart-bar',
      title: 'Stacked bar chart (signed)',
      path: sign('cht=bvs&chd=t%3A10%2C20%2C30%7C15%2C25%2C35&chs=320x200&chl=Q1%7CQ2%7CQ3&chtt=Sales'),
      status: 200,
      kind: 'chart',
      trigger: 'load',
      note: `Signed with icac=${auth.account}: the general rate limit applies.`,
    },
    {
      id: 'chart-line',
      title: 'Line chart (signed)',
      path: sign(
        'cht=lc&chd=a%3A5%2C12%2C9%2C20%7C3%2C6%2C14%2C11&chs=320x200&chco=2A9D8F%2CE76F51&chtt=Visits',
      ),
      status: 200,
      kind: 'chart',
      trigger: 'load',
      note: 'a: data is scaled automatically.',
    },
    {
      id: 'chart-pie',
      title: 'Doughnut chart (unsigned)',
      path: '/chart?cht=pd&chd=t%3A45%2C30%2C25&chs=260x200&chl=Web%7CMobile%7CAPI',
      status: 200,
      kind: 'chart',
      trigger: 'load',
      note: 'Unsigned requests get the stricter rate limit.',
    },
    {
      id: 'chart-required',
      title: 'Missing chs',
      path: '/chart?cht=p&chd=t%3A1%2C2%2C3',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"chs" is required',
      kind: 'chart',
      trigger: 'load',
      note: 'cht, chd and chs are required.',
    },
    {
      id: 'chart-too-large',
      title: 'Chart too large',
      path: '/chart?cht=bvs&chd=t%3A1%2C2&chs=1200x999',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"chs" width must be less than or equal to 999',
      kind: 'chart',
      trigger: 'load',
      note: 'chs is at most 999x999 (998,001 pixels).',
    },
    {
      id: 'chart-bad-type',
      title: 'Unknown chart type and bad data',
      path: '/chart?cht=zz&chd=t%3A1%2Cx&chs=100x100',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"cht" must be one of',
      kind: 'chart',
      trigger: 'load',
      note: 'Every failure of the request is listed at once.',
    },
    {
      id: 'chart-missing-ent',
      title: 'icac without ichm',
      path: `/chart?cht=p&chd=t%3A1%2C2&chs=100x100&icac=${encodeURIComponent(auth.account)}`,
      status: 400,
      code: 'IC_MISSING_ENT_PARAMETER',
      kind: 'chart',
      trigger: 'load',
      note: 'A signed request needs both icac and ichm.',
    },
    {
      id: 'chart-bad-signature',
      title: 'Tampered signed URL',
      path: sign('cht=p&chd=t%3A1%2C2&chs=100x100').replace('chs=100x100', 'chs=200x200'),
      status: 401,
      code: 'IC_INVALID_SIGNATURE',
      kind: 'chart',
      trigger: 'load',
      note: 'chs was changed after signing.',
    },
    {
      id: 'chart-unknown-account',
      title: 'Unknown account',
      path: `/chart?${signChartQuery('cht=p&chd=t%3A1%2C2&chs=100x100', 'nobody', 'whatever')}`,
      status: 401,
      code: 'IC_ACCOUNT_ID_NOT_FOUND',
      kind: 'chart',
      trigger: 'load',
      note: 'icac names no account.',
    },
    {
      id: 'image-validation',
      title: 'Bad parameters',
      path: '/image/sample.jpg?width=-5&quality=300',
      status: 400,
      code: 'IS_VALIDATION_ERROR',
      validation: '"width"',
      kind: 'image',
      trigger: 'load',
      note: 'Each bad parameter is an item of x-ic-error-validation.',
    },
    {
      id: 'image-param-not-allowed',
      title: 'Parameter not allowed',
      path: '/image/sample.jpg?width=100&face=true',
      status: 401,
      code: 'IC_PARAM_NOT_ALLOWED',
      kind: 'image',
      trigger: 'load',
      note: 'Imagizer answers 401 for parameters outside imageParamsAllowed.',
    },
    {
      id: 'image-host-not-allowed',
      title: 'Origin host not allowed',
      path: '/image/sample.jpg?width=100&origin=https%3A%2F%2Fevil.example',
      status: 401,
      code: 'IC_HOST_NOT_ALLOWED',
      kind: 'image',
      trigger: 'load',
      note: 'origin= must name a host in hostsAllowed.',
    },
    {
      id: 'image-bucket-not-allowed',
      title: 'Bucket not allowed',
      path: '/image/sample.jpg?width=100&bucket=someone-elses-bucket',
      status: 401,
      code: 'IC_BUCKET_NOT_ALLOWED',
      kind: 'image',
      trigger: 'load',
      note: 'bucket= must be in bucketsAllowed.',
    },
    {
      id: 'image-not-found',
      title: 'Missing on the backend',
      path: '/image/missing.jpg?width=100',
      status: 404,
      code: 'IC_IMAGE_NOT_FOUND',
      kind: 'image',
      trigger: 'load',
      note: 'The backend answered 404.',
    },
    {
      id: 'image-backend-forbidden',
      title: 'Backend says 403',
      path: '/image/status/403?width=100',
      status: 403,
      code: 'IC_BACKEND_FORBIDDEN',
      kind: 'image',
      trigger: 'load',
      note: 'Backend 400, 401, 403 and 404 pass through with their own codes.',
    },
    {
      id: 'image-backend-error',
      title: 'Backend says 500',
      path: '/image/status/500?width=100',
      status: 502,
      code: 'IC_BACKEND_ERROR',
      kind: 'image',
      trigger: 'load',
      note: 'A backend 5xx becomes 502, which clients may retry.',
    },
    {
      id: 'image-backend-unavailable',
      title: 'Backend says 503',
      path: '/image/status/503?width=100',
      status: 503,
      code: 'IC_BACKEND_UNAVAILABLE',
      kind: 'image',
      trigger: 'load',
      note: 'A backend 503 stays 503, with Retry-After.',
    },
    {
      id: 'image-not-an-image',
      title: 'Not an image',
      path: '/image/not-an-image.jpg?width=100',
      status: 400,
      code: 'IC_IMAGE_MALFORMED',
      kind: 'image',
      trigger: 'load',
      note: 'The backend sent an HTML page; the bytes are checked, not the name.',
    },
    {
      id: 'image-private-redirect',
      title: 'Redirect into a private network',
      path: '/image/redirect-private.jpg?width=100',
      status: 403,
      code: 'IC_SOURCE_ADDRESS_BLOCKED',
      kind: 'image',
      trigger: 'load',
      note: 'The backend redirects to 127.0.0.2, a non-public address outside the allow-list: refused before connecting.',
    },
    {
      id: 'image-slow',
      title: 'Slow backend',
      path: '/image/slow.jpg?width=100',
      status: 504,
      code: 'IC_BACKEND_TIMEOUT',
      kind: 'image',
      trigger: 'load',
      note: 'The deadline passes first: the backend fetch is aborted.',
    },
    {
      id: 'image-hang',
      title: 'Backend never answers',
      path: '/image/hang.jpg?width=100',
      status: 504,
      code: 'IC_BACKEND_TIMEOUT',
      kind: 'image',
      trigger: 'load',
      note: 'Same deadline; the connection to the backend is closed.',
    },
    {
      id: 'not-found',
      title: 'No such route',
      path: '/nothing-here',
      status: 404,
      code: 'IC_NOT_FOUND',
      kind: 'image',
      trigger: 'load',
      note: 'notFound() sends unmatched requests through the error handler.',
    },
  ]
}
