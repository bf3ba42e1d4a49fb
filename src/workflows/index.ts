export { shotWorkflow } from './shot';
export { episodeWorkflow } from './episode';
